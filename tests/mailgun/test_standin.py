"""The stand-in answers as Mailgun's reference says (docs/mailgun.md lists what is inferred)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import requests

from reconciler_service.server import free_port
from reconciler_service.standins.mailgun import MailgunStandIn
from tests.mailgun.conftest import ACCOUNT_KEY

AUTH = ("api", ACCOUNT_KEY)


def _http(method: str, url: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, timeout=10, **kwargs)


@pytest.fixture
def relay() -> Iterator[MailgunStandIn]:
    standin = MailgunStandIn(ACCOUNT_KEY, ["mg.example.com"]).start(smtp_port=free_port())
    try:
        yield standin
    finally:
        standin.stop()


def _credentials(standin: MailgunStandIn, login: str = "") -> str:
    return f"{standin.url}/v3/domains/mg.example.com/credentials" + (f"/{login}" if login else "")


def test_credentials_api_shapes(standin: MailgunStandIn) -> None:
    created = _http(
        "POST", _credentials(standin), data={"login": "a@mg.example.com", "password": "Pass1234"}, auth=AUTH
    )
    assert created.status_code == 200 and "message" in created.json()
    page = _http("GET", _credentials(standin), params={"skip": 0, "limit": 10}, auth=AUTH).json()
    assert page["total_count"] == 1
    assert set(page["items"][0]) == {"login", "mailbox", "created_at", "size_bytes"}
    assert page["items"][0]["created_at"].endswith("+0000")  # RFC 2822, numeric offset


def test_same_password_is_refused_with_a_message(standin: MailgunStandIn) -> None:
    _http(
        "POST", _credentials(standin), data={"login": "a@mg.example.com", "password": "Pass1234"}, auth=AUTH
    )
    again = _http("PUT", _credentials(standin, "a@mg.example.com"), data={"password": "Pass1234"}, auth=AUTH)
    assert again.status_code == 400
    assert "same as old password" in again.json()["message"]


@pytest.mark.parametrize("password", ["abcd", "x" * 33])
def test_password_length_rule(standin: MailgunStandIn, password: str) -> None:
    answer = _http(
        "POST", _credentials(standin), data={"login": "a@mg.example.com", "password": password}, auth=AUTH
    )
    assert answer.status_code == 400 and "between 5 and 32" in answer.json()["message"]


def test_unknown_login_is_404_with_a_message(standin: MailgunStandIn) -> None:
    for method in ("PUT", "DELETE"):
        answer = _http(
            method, _credentials(standin, "nobody@mg.example.com"), data={"password": "Pass1234"}, auth=AUTH
        )
        assert answer.status_code == 404 and answer.json() == {"message": "Credentials not found"}


def test_the_account_key_is_required(standin: MailgunStandIn) -> None:
    assert _http("GET", _credentials(standin), auth=("api", "wrong")).status_code == 401
    assert _http("GET", _credentials(standin)).status_code == 401


def test_429_injection_carries_retry_after(standin: MailgunStandIn) -> None:
    standin.fail_next(1, retry_after="7")
    answer = _http("GET", _credentials(standin), auth=AUTH)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    assert _http("GET", _credentials(standin), auth=AUTH).status_code == 200


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_side_records_the_login_that_authenticated(relay: MailgunStandIn, mechanism: str) -> None:
    _http("POST", _credentials(relay), data={"login": "a@mg.example.com", "password": "Pass1234"}, auth=AUTH)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@mg.example.com", "rcpt@example.org", "hi"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as smtp:
        smtp.ehlo("test")
        smtp.user, smtp.password = "a@mg.example.com", "Pass1234"
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        smtp.send_message(message)
    assert [(m.login, m.subject) for m in relay.messages] == [("a@mg.example.com", "hi")]


def test_smtp_side_refuses_a_wrong_password(relay: MailgunStandIn) -> None:
    _http("POST", _credentials(relay), data={"login": "a@mg.example.com", "password": "Pass1234"}, auth=AUTH)
    with (
        smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        smtp.login("a@mg.example.com", "Wrong1234")
    assert relay.messages == []
