"""plan, apply (without a terminal), verify and console drift through the CLI, against the stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.errors import ExitCode
from tests.cmc.conftest import Cmc


def test_plan_is_the_console_checklist_in_markdown_without_any_key(cmc: Cmc) -> None:
    cmc.declare("billing@example.com", role="admin", timezone="UTC")
    code, out = cmc.cli("plan", "--detailed-exitcode", "--format", "markdown")
    assert code == ExitCode.CHANGES_PENDING
    out = out.replace("\\", "")  # as rendered: Markdown escapes gone
    for words in (
        "Menu → API settings → API user tab",
        "API Key (confirmation)",
        "API group Admin",
        "Access Authorization: SMTP",
        "Time Zone: `UTC`",
        "Not observable",
    ):
        assert words in out


def test_plan_json_says_what_is_observable(cmc: Cmc) -> None:
    cmc.declare("billing@example.com")
    _, out = cmc.cli("plan", "--format", "json")
    doc = json.loads(out)
    assert doc["tasks"][0]["action"] == "create"
    assert "timezone" in doc["not_observable"] and "access.smtp" in doc["observable"]


def test_apply_without_a_terminal_publishes_the_checklist_and_waits_for_a_person(
    cmc: Cmc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    key = cmc.declare("billing@example.com")
    code, out = cmc.cli("apply")
    assert code == ExitCode.WAITING
    assert int(code) == 4
    assert "click add" in out and "click add" in summary.read_text()
    # The person does it in the console; verify confirms it and records it.
    cmc.standin.driver.add("billing@example.com", key)
    code, out = cmc.cli("verify")
    assert code == 0, out
    assert "ok   billing@example.com" in out
    code, out = cmc.cli("plan")
    assert code == 0 and "0 change(s)" in out


def test_verify_catches_a_step_done_wrong_and_says_what_the_probe_saw(cmc: Cmc) -> None:
    key = cmc.declare("billing@example.com")
    cmc.standin.driver.add("billing@example.com", key, smtp=False)  # SMTP box left unchecked
    code, out = cmc.cli("verify")
    assert code == ExitCode.ERROR
    assert "refused on the relay" in out and "1 failed authentication(s)" in out
    code, out = cmc.cli("plan")
    assert "click add" in out  # not recorded: still pending


def test_console_drift_from_the_audit_log_shows_in_the_plan_with_its_author(cmc: Cmc) -> None:
    key = cmc.declare("billing@example.com")
    cmc.standin.driver.add("billing@example.com", key)
    assert cmc.cli("verify")[0] == 0
    cmc.standin.driver.console_account = "someone@example.com"
    # A minute later: the log's times have whole seconds, and a change in the second of the
    # verification is taken as part of it.
    cmc.standin.account.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
    cmc.standin.driver.lock("billing@example.com")
    code, out = cmc.cli("plan", "--detailed-exitcode")
    assert code == ExitCode.CHANGES_PENDING
    assert "lock by someone@example.com" in out
    assert "uncheck Lock this account" in out


def test_nothing_is_probed_with_the_key_of_a_deleted_user(cmc: Cmc) -> None:
    key = cmc.declare("old@example.com")
    cmc.standin.driver.add("old@example.com", key)
    assert cmc.cli("verify")[0] == 0
    cmc.remove("old@example.com")
    before = len(cmc.standin.account.logins)
    assert "click Delete" in cmc.cli("plan")[1]
    cmc.standin.account.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
    cmc.standin.driver.delete("old@example.com")
    code, out = cmc.cli("verify")
    assert code == 0 and "not probed" in out
    assert [e for e in cmc.standin.account.logins[before:] if e["account"] == "old@example.com"] == []


def test_verify_serves_what_was_verified_and_relays_to_the_configured_cmc_host(
    cmc: Cmc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_MAIL_CHECKS", "skip")
    good = cmc.declare("good@example.com")
    cmc.declare("pending@example.com")  # declared, never done in the console
    cmc.standin.driver.add("good@example.com", good)
    mail = cmc.root / "mail"
    code, out = cmc.cli("verify", "--mail-dir", str(mail), "--no-reload")
    assert code == ExitCode.ERROR and not mail.exists()  # pending@ does not match: nothing served
    code, out = cmc.cli("verify", "--target", "good@*", "--mail-dir", str(mail), "--no-reload")
    assert code == 0, out
    relayhosts = (mail / "postfix" / "sender_relayhost_maps").read_text()
    assert f"good@example.com [127.0.0.1]:{cmc.standin.smtp_port}" in relayhosts
    assert "pending@example.com" not in relayhosts


def test_a_delete_is_confirmed_by_the_audit_log_and_then_forgotten(cmc: Cmc) -> None:
    key = cmc.declare("old@example.com")
    cmc.standin.driver.add("old@example.com", key)
    assert cmc.cli("verify")[0] == 0
    cmc.remove("old@example.com")
    code, out = cmc.cli("verify")
    assert code == ExitCode.ERROR and "no Delete of this user" in out
    cmc.standin.account.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
    cmc.standin.driver.delete("old@example.com")
    code, out = cmc.cli("verify")
    assert code == 0 and "delete by operator@example.com" in out
    code, out = cmc.cli("plan")
    assert code == 0 and "old@example.com" not in out


def test_a_declared_key_that_breaks_the_key_rule_fails_the_plan_with_file_and_line(cmc: Cmc) -> None:
    cmc.declare("app@example.com")
    cmc.monkeypatch.setenv("KEY_APP", "short")
    code, out = cmc.cli("plan")
    assert code == ExitCode.ERROR
    assert "app@example.com.yaml:3: api_key.from_env" in out


def test_verify_json_lists_what_each_probe_saw_and_the_failed_logins(cmc: Cmc) -> None:
    key = cmc.declare("billing@example.com", access={"http_api": True, "smtp": False})
    cmc.standin.driver.add("billing@example.com", key, smtp=False)
    code, out = cmc.cli("verify", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["verified"][0]["ok"] is True
    assert doc["failed_authentications"] == 1  # SMTP unchecked: the relay refuses, as declared
