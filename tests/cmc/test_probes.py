"""Probing is bounded and refuses to send a key where it could be read."""

from __future__ import annotations

import time

import pytest

from reconciler.backend.cmc.transport import Seen, Throttle
from reconciler.errors import ExitCode
from reconciler.secrets import ApiKey
from tests.cmc.conftest import ADMIN, Cmc


def test_at_most_one_transactional_email_request_per_user_and_run(cmc: Cmc) -> None:
    key = cmc.declare("app@example.com")
    cmc.standin.driver.add("app@example.com", key)
    run = cmc.run()
    try:
        from reconciler.workflows.verify import verify_user

        for _ in range(3):
            assert verify_user(run, "app@example.com").ok
    finally:
        run.close()
    mine = [r for r in cmc.standin.account.http_requests if r[1] == "app@example.com"]
    assert len(mine) == 1
    assert run.transport.probes == 4  # three SMTP logins, one API request


def test_only_users_with_a_change_or_named_are_probed(cmc: Cmc) -> None:
    for name in ("a@example.com", "b@example.com"):
        cmc.standin.driver.add(name, cmc.declare(name))
    assert cmc.cli("verify")[0] == 0
    before = len(cmc.standin.account.logins)
    code, out = cmc.cli("verify")
    assert code == 0 and "0 user(s) probed" in out
    code, out = cmc.cli("verify", "--target", "b@*")
    assert "1 user(s) probed" in out
    probed = {e["account"] for e in cmc.standin.account.logins[before:]} - {ADMIN}  # the audit-log read
    assert probed == {"b@example.com"}


def test_the_probe_rate_is_kept() -> None:
    throttle = Throttle(rate=20)
    start = time.monotonic()
    for _ in range(5):
        throttle.wait()
    assert time.monotonic() - start >= 4 / 20 - 0.01


def test_a_relay_without_starttls_that_is_not_loopback_gets_no_key(
    cmc: Cmc, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "127.1" reaches loopback (inet_aton) but is not an address the tool takes for loopback: it
    # stands for any remote relay here.
    monkeypatch.setenv("RECONCILER_CMC_RELAY_HOST", "127.1")
    key = cmc.declare("app@example.com")
    cmc.standin.driver.add("app@example.com", key)
    before = len(cmc.standin.account.logins)
    code, out = cmc.cli("verify")
    assert code == ExitCode.ERROR and "offers no STARTTLS" in out
    assert [e for e in cmc.standin.account.logins[before:] if e["channel"] == "smtp"] == []


def test_plain_http_is_refused_unless_loopback(cmc: Cmc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CMC_API_URL", "http://api.example.com/transaction/v2")
    cmc.declare("app@example.com")
    code, out = cmc.cli("plan")
    assert code == ExitCode.ERROR and "refusing plain http" in out


def test_the_relay_host_is_required(cmc: Cmc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_CMC_RELAY_HOST")
    cmc.declare("app@example.com")
    code, out = cmc.cli("plan")
    assert code == ExitCode.ERROR and "RECONCILER_CMC_RELAY_HOST" in out


def test_a_refused_login_is_counted_and_the_role_is_seen(cmc: Cmc) -> None:
    cmc.standin.driver.add("boss@example.com", "k1BossKey12345", role="admin")
    run = cmc.run()
    try:
        assert run.transport.http_probe("boss@example.com", ApiKey("k1BossKey12345")).seen is Seen.OK
        assert run.transport.smtp_probe("boss@example.com", ApiKey("k1WrongKey1234")).seen is Seen.REFUSED
        assert run.transport.failed_authentications == 1
    finally:
        run.close()
