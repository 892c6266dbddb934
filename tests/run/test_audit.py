"""The write-ahead audit log: intents before writes, outcomes after, a line torn by a crash
isolated and reported, never a reason to stop reading; `status` shows unknown outcomes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.run.audit import AUDIT_FILE, AuditLog
from tests.desired.helpers import run


def test_an_intent_without_outcome_is_unsettled_until_settled(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, {"actor": "me"})
    done = log.intent(action="create", api_user="a@example.com")
    log.outcome(done, action="create", api_user="a@example.com", outcome="ok")
    lost = log.intent(action="update", api_user="b@example.com")
    kept = log.intent(action="delete", api_user="c@example.com")
    assert [e["id"] for e in log.read().unsettled()] == [lost, kept]
    settled = log.settle({("c@example.com", "delete")}, lambda _name: True)
    assert settled == 2
    outcomes = {e["id"]: e for e in log.read().entries if e.get("event") == "outcome"}
    assert outcomes[lost]["outcome"] == "ok" and "in effect" in outcomes[lost]["detail"]
    assert outcomes[kept]["outcome"] == "failed" and "not in effect" in outcomes[kept]["detail"]
    assert log.read().unsettled() == []


def test_a_torn_last_line_is_reported_skipped_and_isolated(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, {})
    first = log.intent(action="create", api_user="a@example.com")
    with (tmp_path / AUDIT_FILE).open("a") as handle:
        handle.write('{"event": "outcome", "id": "')  # what a crash mid-write would leave
    read = log.read()
    assert read.damaged == [2] and [e["id"] for e in read.entries] == [first]
    log.outcome(first, action="create", api_user="a@example.com", outcome="ok")
    lines = (tmp_path / AUDIT_FILE).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["id"] == first  # the next line starts clean
    assert log.read().damaged == [2] and log.read().unsettled() == []


def test_status_shows_unknown_outcomes_and_damaged_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    monkeypatch.setenv("RECONCILER_API_URL", "http://127.0.0.1:9/api/v2")  # nothing listens: drift fails
    log = AuditLog(tmp_path / ".reconciler", {"actor": "ci"})
    log.intent(action="update", api_user="b@example.com", key_change=False)
    with log.path.open("a") as handle:
        handle.write("{torn")
    result = run(capsys, "status", "--users", str(users))
    assert re.search(r"update\s+b@example\.com\s+outcome unknown$", result.out, re.M), result.out
    assert "1 change(s) with outcome unknown" in result.out
    assert "line 2 of" in result.out and "is not JSON" in result.out


def test_intent_lines_hold_no_key_and_the_log_is_private(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, {})
    log.intent(action="create", api_user="a@example.com", fields={"role": "normal"}, key_change=True)
    (line,) = (tmp_path / AUDIT_FILE).read_text().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "intent" and entry["outcome"] is None and "api_key" not in entry["fields"]
    assert oct((tmp_path / AUDIT_FILE).stat().st_mode & 0o777) == "0o600"


def test_the_intent_is_on_disk_before_the_change_is_sent_and_the_outcome_costs_no_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log = AuditLog(tmp_path, {"actor": "test"})
    intent = log.intent(action="update", api_user="a@example.com")
    assert len(synced) == 1  # write-ahead: the intent survives a power loss
    log.outcome(intent, action="update", api_user="a@example.com", outcome="ok")
    assert len(synced) == 1  # an outcome lost with the power is settled by the next plan
    assert log.read().unsettled() == []
