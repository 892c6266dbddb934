"""The Mailgun stand-in on loopback, and backends/clients pointed at it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from reconciler.backend.mailgun import MailgunBackend
from reconciler.backend.mailgun.client import MailgunClient
from reconciler_service.standins.mailgun import MailgunStandIn

ACCOUNT_KEY = "key-" + "0123456789abcdef" * 2
DOMAINS = ("mg.example.com", "eu.example.org")


@pytest.fixture
def standin() -> Iterator[MailgunStandIn]:
    with MailgunStandIn(ACCOUNT_KEY, list(DOMAINS)) as running:
        yield running


@pytest.fixture
def client(standin: MailgunStandIn) -> Iterator[MailgunClient]:
    with MailgunClient(standin.url, SecretStr(ACCOUNT_KEY), deadline=5.0) as made:
        yield made


@pytest.fixture
def backend(client: MailgunClient) -> Iterator[MailgunBackend]:
    made = MailgunBackend(client, DOMAINS)
    yield made
    made.close()


@pytest.fixture
def domain() -> str:
    return DOMAINS[0]


@pytest.fixture
def new_login(domain: str) -> str:
    """A login no earlier run used (the live API keeps what a failed test left)."""
    return f"rt-{secrets.token_hex(4)}@{domain}"
