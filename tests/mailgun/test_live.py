"""The same cases (cases.py) against the real Mailgun API. Opt-in: it creates and deletes real
credentials. `make test` never runs it, so it proves the stand-in, not the live API.

    RECONCILER_LIVE_TESTS=1 RECONCILER_MAILGUN_TEST_DOMAIN=mg.example.com MAILGUN_API_KEY=... \\
    [RECONCILER_MAILGUN_REGION=eu] .venv/bin/pytest tests/mailgun/test_live.py
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Iterator
from typing import Literal

import pytest

from reconciler.backend.mailgun import MailgunBackend
from reconciler.backend.mailgun.backend import account_key
from reconciler.backend.mailgun.client import MailgunClient
from reconciler.config import Settings, mailgun_api_base, relay_endpoint
from tests.mailgun.cases import KEY_A, CredentialCases

LIVE = os.environ.get("RECONCILER_LIVE_TESTS") == "1"
DOMAIN = os.environ.get("RECONCILER_MAILGUN_TEST_DOMAIN", "")

pytestmark = pytest.mark.skipif(
    not (LIVE and DOMAIN), reason="live Mailgun: set RECONCILER_LIVE_TESTS=1, a test domain and key"
)


@pytest.fixture
def domain() -> str:
    return DOMAIN.lower()


@pytest.fixture
def backend(domain: str) -> Iterator[MailgunBackend]:
    settings = Settings(
        backend="mailgun",
        mailgun_region=_region(),
        mailgun_api_key_env=os.environ.get("RECONCILER_MAILGUN_API_KEY_ENV", "MAILGUN_API_KEY"),
    )
    client = MailgunClient(mailgun_api_base(settings), account_key(settings), deadline=30.0)
    made = MailgunBackend(client, (domain,))
    yield made
    made.close()


class TestLiveMailgun(CredentialCases):
    pass

    def test_a_created_credential_logs_in_to_the_regions_relay_over_tls(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        host, port = relay_endpoint(Settings(backend="mailgun", mailgun_region=_region()))
        backend.users.create(new_login, {}, KEY_A, {})
        try:
            deadline = time.monotonic() + 60  # a new credential may take a moment to reach the relay
            while True:
                try:
                    with smtplib.SMTP(host, port, timeout=15) as smtp:
                        smtp.starttls(context=ssl.create_default_context())
                        smtp.login(new_login, KEY_A.reveal())
                    break
                except smtplib.SMTPAuthenticationError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(5)
        finally:
            backend.users.delete(new_login)


def _region() -> Literal["us", "eu"]:
    return "eu" if os.environ.get("RECONCILER_MAILGUN_REGION") == "eu" else "us"
