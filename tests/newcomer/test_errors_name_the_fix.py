"""Errors a newcomer meets in the first hour say what to do about them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reconciler.config import load_settings
from reconciler_service.server import free_port
from tests.cli.schemas import validate
from tests.engine.conftest import Repo, repo, run_cli

__all__ = ["repo"]


def test_a_wrong_admin_key_names_both_variables(repo: Repo) -> None:
    env = repo.env() | {"RECONCILER_API_KEY": "k1wrongwrongwrong"}
    result = repo.run("live", env=env)
    assert result.code == 1
    assert "HTTP 401" in result.stderr
    assert "RECONCILER_API_USER" in result.stderr and "RECONCILER_API_KEY" in result.stderr


def test_a_stopped_service_on_loopback_fails_at_once_with_the_command_that_starts_it(repo: Repo) -> None:
    port = free_port("127.0.0.1")
    env = repo.env() | {"RECONCILER_API_URL": f"http://127.0.0.1:{port}/api/v2"}
    started = time.monotonic()
    result = repo.run("plan", env=env)
    assert time.monotonic() - started < 1.0  # no 3.3 s of retries
    assert result.code == 1
    assert f"http://127.0.0.1:{port}/api/v2" in result.stderr
    assert f"reconciler-service run --db .reconciler/service.db --port {port}" in result.stderr
    assert "NewConnectionError" not in result.stderr


def test_a_mistyped_variable_is_a_warning_with_did_you_mean(repo: Repo) -> None:
    result = repo.run("plan", env=repo.env() | {"RECONCILER_MAX_DELETE": "10"})
    assert result.code == 0
    assert (
        "unknown variable RECONCILER_MAX_DELETE is ignored; did you mean RECONCILER_MAX_DELETES?"
        in result.stderr
    )
    # A variable a users/ file may read its key from is never reported.
    assert (
        "RECONCILER_NEW_API_KEY"
        not in repo.run("plan", env=repo.env() | {"RECONCILER_NEW_API_KEY": "x"}).stderr
    )


def test_a_target_that_matches_nobody_is_a_warning_not_silence(repo: Repo) -> None:
    repo.write("billing@example.com")
    result = repo.run("plan", "--target", "biling@*")
    assert result.code == 0
    assert "warning: --target 'biling@*' matches no API user in users/ or on the service" in result.stderr
    assert "matches no API user" in result.stdout  # the plan itself says it too
    assert "matches no" not in repo.run("plan", "--target", "billing@*").stderr


def test_a_stale_plan_names_the_user_whose_file_moved(repo: Repo) -> None:
    repo.write("a@example.com")
    repo.write("b@example.com")
    assert repo.run("plan", "--out", "plan.json").code == 0
    repo.write("b@example.com", description="edited after the plan")
    stale = repo.run("apply", "plan.json")
    assert stale.code == 1
    assert "the plan now differs for b@example.com" in stale.stderr
    assert "a@example.com" not in stale.stderr


def test_commands_find_the_project_from_users_or_any_directory_below(repo: Repo) -> None:
    repo.write("a@example.com")
    below = repo.root / "docs" / "deeper"
    below.mkdir(parents=True)
    for where in (repo.users, below):
        result = run_cli(["plan", "--detailed-exitcode"], repo.env(), cwd=where)
        assert result.code == 2, result.output
        assert "create a@example.com" in result.stdout


def test_tilde_is_expanded_in_path_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "users").mkdir()
    settings = load_settings(
        tmp_path / "users", {"RECONCILER_MAIL_DIR": "~/mail", "RECONCILER_STATE_DIR": "~/st"}
    )
    assert settings.mail_dir == str(tmp_path / "mail")
    assert settings.state_dir == str(tmp_path / "st")


def test_service_messages_follows_the_json_conventions_and_prints_a_table(repo: Repo) -> None:
    document = json.loads(repo.run("service", "messages", "--format", "json").stdout)
    assert document == {"format_version": 1, "ok": True, "total": 0, "messages": []}
    validate("messages", document)
    assert "No messages" in repo.run("service", "messages").stdout


def test_import_says_how_many_files_it_wrote(repo: Repo) -> None:
    repo.write("a@example.com")
    assert repo.run("apply", "--auto-approve").code == 0
    again = repo.run("import")
    assert "wrote 0 file(s)" in again.stdout, again.stdout
    repo.remove("a@example.com")
    once = repo.run("import")
    assert "wrote 1 file(s)" in once.stdout and "1 created" in once.stdout, once.stdout
