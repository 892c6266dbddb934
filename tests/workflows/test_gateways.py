"""The pure parts of reconciler/workflows/gateways.py: who is behind, waiting for the fleet, the
audit entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.mail import MailReport
from reconciler.workflows.gateways import (
    MailStepRecord,
    audit_entry,
    laggards,
    wait_for_gateways,
    with_behind,
)

NEW, OLD = "e" * 64, "0" * 64  # sha-256 hex digests, the shape a report must have


def report(name: str, digest: str, result: str = "ok") -> dict[str, Any]:
    return {"name": name, "commit": "c0ffee0", "desired_digest": digest, "result": result, "reported_at": "t"}


def test_behind_means_another_digest_or_a_failed_last_render() -> None:
    rows = with_behind([report("a", NEW), report("b", OLD), report("c", NEW, "rolled_back")], NEW)
    assert [(r["name"], r["behind"]) for r in rows] == [("a", False), ("b", True), ("c", True)]
    # users/ invalid here: only the result can tell.
    assert [r["behind"] for r in with_behind([report("b", OLD)], None)] == [False]


def test_wait_returns_at_once_when_all_serve_the_digest_and_names_laggards_at_the_deadline() -> None:
    now = [0.0]
    answers = iter([[report("a", OLD), report("b", OLD)], [report("a", NEW), report("b", OLD)]])
    last: list[dict[str, Any]] = []

    def fetch() -> list[dict[str, Any]]:
        last[:] = next(answers, last)
        return list(last)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert wait_for_gateways(fetch, NEW, 10, poll=2, sleep=sleep, clock=lambda: now[0]) == ["b"]
    assert now[0] == 10
    assert laggards([report("a", NEW)], NEW) == []


def test_the_audit_entry_holds_names_and_counts_only() -> None:
    mail = MailReport(Path("/m"), ("postfix/sasl_passwd",), ("postfix",), ("EHLO ok",), 2, 5)
    entry = audit_entry(MailStepRecord("ok", mail), Path("/m"), NEW)
    assert entry == {
        "action": "mail",
        "mail_dir": "/m",
        "desired_digest": NEW,
        "outcome": "ok",
        "changed": ["postfix/sasl_passwd"],
        "keys_hashed": 2,
        "smtp_users": 5,
        "reloaded": ["postfix"],
        "smoke_checks": ["EHLO ok"],
        "warnings": [],
    }
    failed = audit_entry(MailStepRecord("rolled_back", None, "smoke check failed"), Path("/m"), NEW)
    assert (failed["outcome"], failed["detail"]) == ("rolled_back", "smoke check failed")
