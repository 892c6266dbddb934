"""The same cases (cases.py) against the real Mailgun API. Opt-in: it creates and deletes real
credentials. `make test` never runs it, so it proves the stand-in, not the live API.

    RECONCILER_LIVE_TESTS=1 RECONCILER_MAILGUN_TEST_DOMAIN=mg.example.com MAILGUN_API_KEY=... \\
    [RECONCILER_MAILGUN_REGION=eu] .venv/bin/pytest tests/mailgun/test_live.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from reconciler.backend.mailgun import MailgunBackend
from reconciler.backend.mailgun.backend import account_key
from reconciler.backend.mailgun.client import MailgunClient
from reconciler.config import Settings, mailgun_api_base
from tests.mailgun.cases import CredentialCases

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
        mailgun_region=os.environ.get("RECONCILER_MAILGUN_REGION", "us"),
        mailgun_api_key_env=os.environ.get("RECONCILER_MAILGUN_API_KEY_ENV", "MAILGUN_API_KEY"),
    )
    client = MailgunClient(mailgun_api_base(settings), account_key(settings), deadline=30.0)
    made = MailgunBackend(client, (domain,))
    yield made
    made.close()


class TestLiveMailgun(CredentialCases):
    pass
