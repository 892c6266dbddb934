"""The one error boundary, `reconciler.cli.main(argv) -> int`: whatever a command raises ends as one
message and a pinned exit code, never a traceback and never click's 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import validate as validate_module
from reconciler.errors import ExitCode
from tests.fixtures.cli import run_main

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
KEYLIKE = "Zx9Qw8Er7Ty6Ui5O"


def test_an_unknown_option_is_exit_1_not_clicks_2() -> None:
    result = run_main(["plan", "--no-such-option"])
    assert result.code == ExitCode.ERROR
    assert "No such option '--no-such-option'" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_verb_and_a_bad_value_are_exit_1() -> None:
    assert run_main(["frobnicate"]).code == ExitCode.ERROR
    bad = run_main(["plan", "--format", "yaml"])
    assert bad.code == ExitCode.ERROR
    assert "Invalid value for '--format'" in bad.stderr


def test_help_and_version_exit_0() -> None:
    assert run_main(["--help"]).code == ExitCode.OK
    version = run_main(["--version"])
    assert (version.code, version.stdout.startswith("reconciler, version")) == (0, True)


def test_a_bug_is_one_line_with_a_hint_and_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_users: Path) -> None:
        raise RuntimeError(f"unexpected state near {KEYLIKE}\nsecond line")

    monkeypatch.setattr(validate_module, "load_users_checked", broken)
    (tmp_path / "users").mkdir()
    result = run_main(["validate", "--users", str(tmp_path / "users")])
    assert result.code == ExitCode.ERROR
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: internal error: RuntimeError: unexpected state near **********",
        "This is a bug in reconciler; run again with RECONCILER_DEBUG=1 to see the traceback.",
    ]


def test_reconciler_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_users: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(validate_module, "load_users_checked", broken)
    monkeypatch.setenv("RECONCILER_DEBUG", "1")
    (tmp_path / "users").mkdir()
    result = run_main(["validate", "--users", str(tmp_path / "users")])
    assert result.code == ExitCode.ERROR
    assert "Traceback (most recent call last)" in result.stderr
    assert "internal error: RuntimeError: boom" in result.stderr


def test_a_bug_in_json_mode_is_a_json_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_users: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(validate_module, "load_users_checked", broken)
    (tmp_path / "users").mkdir()
    result = run_main(["validate", "--format", "json", "--users", str(tmp_path / "users")])
    assert result.code == ExitCode.ERROR
    assert '"error": "internal error: RuntimeError: boom"' in result.stdout


def test_the_console_script_exits_with_mains_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [RECONCILER, "plan", "--bogus"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == ExitCode.ERROR
    assert "Traceback" not in done.stderr


def test_a_closed_stdout_pipe_ends_quietly_with_141(tmp_path: Path) -> None:
    # The reader is gone before the first write (`true` exits at once), as after `| head -1`.
    script = f"{RECONCILER!s} schema | true; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert done.stdout.strip() == str(ExitCode.PIPE_CLOSED)
    assert done.stderr == ""
