"""Opt-in: the read-only probes against a real Customers Mail Cloud account (docs/cmc.md).

Runs only with RECONCILER_LIVE_TESTS=1 and the account's settings in the environment:
RECONCILER_CMC_RELAY_HOST, RECONCILER_API_USER / RECONCILER_API_KEY (an API group Admin), and
optionally RECONCILER_CMC_LIVE_USER / RECONCILER_CMC_LIVE_KEY (a user to probe). Costs one SMTP
login, one Transactional Email request and one audit-log read.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.backend.cmc.transport import Seen, Transport
from reconciler.config import Settings
from reconciler.secrets import ApiKey

LIVE = os.environ.get("RECONCILER_LIVE_TESTS") == "1"
pytestmark = pytest.mark.skipif(not LIVE, reason="live checks: RECONCILER_LIVE_TESTS=1 and an account")


def _transport() -> Transport:
    settings = Settings.model_validate(
        {
            "cmc_relay_host": os.environ["RECONCILER_CMC_RELAY_HOST"],
            "cmc_relay_port": int(os.environ.get("RECONCILER_CMC_RELAY_PORT", "587")),
            "api_user": os.environ["RECONCILER_API_USER"],
            "api_key": os.environ["RECONCILER_API_KEY"],
            **(
                {"cmc_api_url": os.environ["RECONCILER_CMC_API_URL"]}
                if "RECONCILER_CMC_API_URL" in os.environ
                else {}
            ),
        }
    )
    return Transport.from_settings(settings)


def test_the_admin_reads_the_operation_log_of_the_last_day() -> None:
    transport = _transport()
    today = datetime.now(UTC).date()
    records = transport.console_operations(today - timedelta(days=1), today)
    assert all("account" in r and "created" in r for r in records)


def test_a_user_authenticates_on_the_relay_and_the_api() -> None:
    user, key = os.environ.get("RECONCILER_CMC_LIVE_USER"), os.environ.get("RECONCILER_CMC_LIVE_KEY")
    if not (user and key):
        pytest.skip("RECONCILER_CMC_LIVE_USER / RECONCILER_CMC_LIVE_KEY not set")
    transport = _transport()
    assert transport.smtp_probe(user, ApiKey(key)).seen is Seen.OK
    assert transport.http_probe(user, ApiKey(key)).seen in (Seen.OK, Seen.NOT_ADMIN)
