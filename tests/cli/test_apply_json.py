"""apply and reconcile for pipelines (--format json) and the mail preview of --mail-dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import Repo
from tests.cli.schemas import validate

MAIL_ENV = {
    "RECONCILER_MAIL_FILE_GROUP": "root",
    "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
    "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
}


def _document(stdout: str, schema: str = "apply") -> dict[str, Any]:
    document = json.loads(stdout)
    validate(schema, document)
    assert isinstance(document, dict)
    return document


def test_apply_json_reports_each_users_outcome(repo: Repo) -> None:
    repo.write("new@example.com", access={"smtp": True})
    result = repo.run("apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.output
    document = _document(result.stdout)
    assert document["ok"] is True and document["command"] == "apply"
    assert {"api_user": "new@example.com", "action": "create", "outcome": "ok", "detail": None} in document[
        "outcomes"
    ]
    assert document["converged"] is True and document["pending"] == []
    assert document["plan"]["summary"]["create"] == 1
    assert document["mail"] is None


def test_apply_json_with_nothing_to_do(repo: Repo) -> None:
    assert repo.run("apply", "--auto-approve").code == 0
    result = repo.run("apply", "--auto-approve", "--format", "json")
    assert result.code == 0
    document = _document(result.stdout)
    assert (document["ok"], document["outcomes"], document["plan"]) == (True, [], None)


def test_apply_json_reports_a_failed_user_and_exits_1(repo: Repo) -> None:
    repo.write("good@example.com")
    repo.write("bad@example.com")
    repo.service.faults.fail_writes_for = {"bad@example.com"}
    result = repo.run("apply", "--auto-approve", "--format", "json")
    assert result.code == 1
    document = _document(result.stdout)
    outcomes = {o["api_user"]: o["outcome"] for o in document["outcomes"]}
    assert outcomes["good@example.com"] == "ok" and outcomes["bad@example.com"] == "failed"
    assert document["ok"] is False


def test_apply_json_of_a_saved_plan_carries_that_plan(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    result = repo.run("apply", "plan.json", "--format", "json")
    assert result.code == 0, result.output
    assert _document(result.stdout)["plan"] == json.loads((repo.root / "plan.json").read_text())


def test_apply_json_without_auto_approve_is_a_json_usage_error_and_changes_nothing(repo: Repo) -> None:
    repo.write("new@example.com")
    result = repo.run("apply", "--format", "json")
    assert result.code == 1
    error = _document(result.stdout, "error")
    assert "--auto-approve" in error["error"]
    assert "new@example.com" not in repo.live()


def test_a_stale_plan_under_json_is_a_json_error_with_exit_1(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    repo.write("other@example.com")
    result = repo.run("apply", "plan.json", "--format", "json")
    assert result.code == 1
    assert "the saved plan is stale" in _document(result.stdout, "error")["error"]


def test_an_unsafe_plan_under_json_exits_3_with_a_json_error(repo: Repo) -> None:
    for name in ("a", "b", "c", "d"):
        repo.write(f"{name}@example.com")
    assert repo.run("apply", "--auto-approve").code == 0
    for name in ("a", "b", "c", "d"):
        repo.remove(f"{name}@example.com")
    result = repo.run("apply", "--auto-approve", "--format", "json")
    assert result.code == 3, result.output
    assert _document(result.stdout, "error")["ok"] is False


def test_reconcile_json_has_the_mail_step(repo: Repo, tmp_path: Path) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    mail_dir = tmp_path / "mail"
    args = ["reconcile", "--auto-approve", "--mail-dir", str(mail_dir), "--no-reload", "--format", "json"]
    result = repo.run(*args, env=repo.env() | MAIL_ENV)
    assert result.code == 0, result.output
    document = _document(result.stdout)
    assert document["command"] == "reconcile"
    assert document["mail"]["skipped"] is False
    assert "postfix/sasl_passwd" in document["mail"]["changed"]
    assert document["mail"]["hashes"] == 1


def test_reconcile_json_without_a_mail_dir_says_the_step_was_skipped(repo: Repo) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    result = repo.run("reconcile", "--auto-approve", "--format", "json")
    assert result.code == 0, result.output
    assert _document(result.stdout)["mail"] == {"skipped": True}


def test_plan_mail_dir_previews_exactly_like_the_setting(repo: Repo, tmp_path: Path) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    mail_dir = tmp_path / "mail"
    by_option = repo.run(
        "plan", "--detailed-exitcode", "--mail-dir", str(mail_dir), env=repo.env() | MAIL_ENV
    )
    by_setting = repo.run(
        "plan", "--detailed-exitcode", env=repo.env() | MAIL_ENV | {"RECONCILER_MAIL_DIR": str(mail_dir)}
    )
    without = repo.run("plan", "--detailed-exitcode", env=repo.env() | MAIL_ENV)
    assert by_option.code == by_setting.code == 2
    assert by_option.stdout == by_setting.stdout
    assert "Mail server files that would change" in by_option.stdout
    assert "~ postfix/sasl_passwd" in by_option.stdout
    assert "Mail server files" not in without.stdout
    assert not mail_dir.exists()  # a preview writes nothing


def test_reconcile_mail_dir_shows_the_mail_files_in_its_preview(repo: Repo, tmp_path: Path) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    mail_dir = tmp_path / "mail"
    args = ["reconcile", "--auto-approve", "--mail-dir", str(mail_dir), "--no-reload"]
    result = repo.run(*args, env=repo.env() | MAIL_ENV)
    assert result.code == 0, result.output
    preview, _, after = result.stdout.partition("changes applied.")
    assert "~ postfix/sasl_passwd" in preview
    assert "Mail files changed in" in after


def test_a_mail_step_failure_after_apply_keeps_the_outcomes_in_the_json(repo: Repo, tmp_path: Path) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    (mail_dir / "postfix").write_text("a file where a directory belongs\n")
    args = ["reconcile", "--auto-approve", "--mail-dir", str(mail_dir), "--no-reload", "--format", "json"]
    result = repo.run(*args, env=repo.env() | MAIL_ENV)
    assert result.code == 1, result.output
    document = _document(result.stdout)
    assert document["ok"] is False and document["error"]
    assert {"api_user": "smtp@example.com", "action": "create", "outcome": "ok", "detail": None} in document[
        "outcomes"
    ]


def test_reconcile_json_names_the_gateways_still_behind(repo: Repo) -> None:
    report = {
        "commit": "0" * 40,
        "desired_digest": "f" * 64,  # not this checkout's users/
        "rendered_at": "2026-11-30T12:00:00Z",
        "result": "ok",
        "smtp_users": 0,
        "version": "0.1.0",
    }
    with repo.service.client() as client:
        client.report_gateway("mx1", report)
    repo.write("new@example.com")
    result = repo.run("reconcile", "--auto-approve", "--wait-gateways", "0s", "--format", "json")
    assert result.code == 1, result.output
    document = _document(result.stdout)
    assert (document["ok"], document["gateways_behind"]) == (False, ["mx1"])
    assert "new@example.com" in repo.live()  # the service part was applied
