"""-q, -v and RECONCILER_LOG: logs go to stderr, debug shows each HTTP request, never a key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.conftest import Repo
from tests.cli.process import run_process

REQUEST_LINE = re.compile(r"GET /api_users\?p=0&r=100 -> 200 in [0-9.]+ ms \(retries: 0\)")


@pytest.mark.parametrize(
    "args",
    [["-vv", "live"], ["live", "-vv"], ["-v", "live", "-v"], ["live", "--verbose", "--verbose"]],
)
def test_debug_shows_each_request_on_stderr_with_the_flags_before_or_after_the_verb(
    repo: Repo, args: list[str]
) -> None:
    result = repo.run(*args, "--format", "json")
    assert result.code == 0, result.output
    assert REQUEST_LINE.search(result.stderr), result.stderr
    assert json.loads(result.stdout)["total"] == 1  # stdout stays pure JSON


def test_reconciler_log_debug_turns_on_request_lines_without_flags(repo: Repo) -> None:
    result = repo.run("live", env=repo.env() | {"RECONCILER_LOG": "debug"})
    assert result.code == 0
    assert REQUEST_LINE.search(result.stderr)


def test_default_level_prints_no_request_lines(repo: Repo) -> None:
    result = repo.run("live")
    assert result.code == 0
    assert "GET /api_users" not in result.stderr


def test_one_v_is_info_so_no_request_lines(repo: Repo) -> None:
    result = repo.run("-v", "live")
    assert re.search(
        r"INFO reconciler.backend.http.client: listed 1 API users \(1 page\(s\)\) in \d+ ms", result.stderr
    )
    assert "GET /api_users" not in result.stderr


def test_quiet_wins_over_reconciler_log(repo: Repo) -> None:
    result = repo.run("-q", "live", env=repo.env() | {"RECONCILER_LOG": "debug"})
    assert result.code == 0
    assert result.stderr == ""


def test_an_unknown_reconciler_log_level_is_a_usage_error(repo: Repo) -> None:
    result = run_process(repo, "live", env=repo.env() | {"RECONCILER_LOG": "chatty"})
    assert result.code == 1
    assert "RECONCILER_LOG='chatty' is not one of error, warning, info, debug" in result.output


def test_debug_lines_of_writes_carry_no_key_and_no_body(repo: Repo) -> None:
    repo.write("new@example.com", access={"smtp": True})
    result = repo.run("-vv", "apply", "--auto-approve")
    assert result.code == 0, result.output
    assert re.search(r"POST /api_users -> 201 in [0-9.]+ ms", result.stderr), result.stderr
    # repo.run fails the test if a key shows up anywhere; a body would show the role or senders.
    debug = [line for line in result.stderr.splitlines() if line.startswith("DEBUG")]
    assert debug and not any("normal" in line or "Authorization" in line for line in debug)


def test_quiet_silences_the_saved_plan_note(repo: Repo) -> None:
    repo.write("new@example.com")
    loud = repo.run("plan", "--detailed-exitcode", "--out", "plan.json")
    quiet = repo.run("plan", "--detailed-exitcode", "--out", "plan.json", "-q")
    assert "Saved the plan" in loud.stderr
    assert quiet.stderr == ""
    assert quiet.code == loud.code == 2


def test_quiet_silences_warnings_but_not_errors(repo: Repo) -> None:
    key_file = repo.root / "new.key"
    key_file.write_text("k1abcdefgh\n")
    key_file.chmod(0o644)
    repo.write("new@example.com", api_key={"from_file": "../new.key"})
    loud = repo.run("plan", "--detailed-exitcode")
    assert "warning:" in loud.stderr and "chmod 600" in loud.stderr
    quiet = repo.run("plan", "--detailed-exitcode", "-q")
    assert quiet.code == loud.code and quiet.stderr == ""
    down = {"RECONCILER_API_URL": "http://127.0.0.1:9/api/v2", "RECONCILER_RETRIES": "0"}
    broken = repo.run("-q", "live", env=repo.env() | down)
    assert broken.code == 1 and broken.stderr.startswith("error: ")


def test_global_options_follow_a_subcommand_of_a_group_too(repo: Repo) -> None:
    result = repo.run("service", "messages", "-vv", "--format", "json")
    assert result.code == 0, result.output
    assert "GET /relay/messages -> 200" in result.stderr


def test_debug_shows_each_command_the_mail_step_runs_and_no_key(repo: Repo, tmp_path: Path) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    env = repo.env() | {
        "RECONCILER_MAIL_FILE_GROUP": "root",
        "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
        "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
    }
    result = repo.run("render", "--mail-dir", str(tmp_path / "mail"), "--no-reload", "-vv", env=env)
    assert result.code == 0, result.output
    assert re.search(r"DEBUG reconciler.mail: run: postconf -n -> 0 in [0-9.]+ ms", result.stderr)
    assert re.search(r"run: postmap -s texthash:\S+sasl_passwd\S* -> 0", result.stderr)
    # repo.run fails the test if a key appears; sasl_passwd's content never reaches the log either
    assert "smtp@example.com:" not in result.stderr
