"""The service's SMTP relay, through smtplib: who may relay, and that each message records its login."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

import pytest

from tests.fixtures.service import RunningService
from tests.service.conftest import create


def _message(sender: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "someone@example.net", subject
    msg.set_content("hello")
    return msg


def _send(service: RunningService, login: str, key: str, mechanism: str = "PLAIN") -> None:
    assert service.smtp_port is not None
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = login, key
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        smtp.send_message(_message(login, f"via {mechanism}"))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_user_relays_and_is_recorded(service: RunningService, mechanism: str) -> None:
    key = create(service, "billing@example.com", access={"http_api": False, "smtp": True})
    _send(service, "billing@example.com", key, mechanism)
    with service.client() as client:
        messages = client.relay_messages()
    assert len(messages) == 1
    assert messages[0]["api_user"] == "billing@example.com"
    assert messages[0]["mail_from"] == "billing@example.com"
    assert messages[0]["rcpt_tos"] == ["someone@example.net"]
    assert messages[0]["subject"] == f"via {mechanism}"


def test_login_name_is_case_insensitive_and_recorded_canonically(service: RunningService) -> None:
    key = create(service, "Billing@example.com", access={"smtp": True})
    _send(service, "BILLING@example.com", key)
    with service.client() as client:
        assert client.relay_messages()[0]["api_user"] == "Billing@example.com"


@pytest.mark.parametrize(
    ("overrides", "wrong_key"),
    [
        ({"access": {"http_api": True, "smtp": False}}, False),  # no SMTP access
        ({"access": {"smtp": True}, "locked": True}, False),  # locked
        ({"access": {"smtp": True}}, True),  # wrong key
    ],
)
def test_refused_logins(service: RunningService, overrides: dict[str, Any], wrong_key: bool) -> None:
    key = create(service, "app@example.com", **overrides)
    with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        _send(service, "app@example.com", "wrongKey123" if wrong_key else key)
    assert caught.value.smtp_code == 535
    with service.client() as client:
        assert client.relay_messages() == []


def test_mail_without_auth_is_refused(service: RunningService) -> None:
    assert service.smtp_port is not None
    with (
        smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=5) as smtp,
        pytest.raises(smtplib.SMTPSenderRefused) as caught,
    ):
        smtp.send_message(_message("x@example.com", "anonymous"))
    assert caught.value.smtp_code == 530


def test_relay_is_off_unless_asked(start_service) -> None:  # type: ignore[no-untyped-def]
    assert start_service(smtp=False).smtp_port is None
