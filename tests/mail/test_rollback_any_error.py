"""After the new mail files are swapped in, ANY failure puts the old ones back byte for byte: a
MailServerError always did; an OSError (a command that is not executable, a failing fsync), Ctrl-C
or SIGTERM used to leave the unvalidated files live. Through `reconciler render`, with the real
postconf/doveconf of this machine validating what was written."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.errors import ExitCode, Terminated
from tests.fixtures.cli import CliResult, run_main

OLD_KEY, NEW_KEY = "Old12345key", "New67890key"


@pytest.fixture
def users(tmp_path: Path) -> Path:
    users = tmp_path / "users"
    users.mkdir()
    (users / "a@example.com.yaml").write_text(
        "api_user: a@example.com\napi_key: {from_env: A_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    return users


def _render(users: Path, mail_dir: Path, key: str, **env: str) -> CliResult:
    base = {
        "A_KEY": key,
        "RECONCILER_MAIL_FILE_GROUP": "root",
        "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
    }
    result = run_main(
        ["render", "--users", str(users), "--mail-dir", str(mail_dir), "--no-reload"], env=base | env
    )
    assert OLD_KEY not in result.output and NEW_KEY not in result.output
    return result


def _snapshot(mail_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file under the mail directory: a digest of its bytes (sasl_passwd holds keys, which a
    failing comparison must not print) and its mode."""
    return {
        str(p.relative_to(mail_dir)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            stat.S_IMODE(p.stat().st_mode),
        )
        for p in sorted(mail_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def rendered(users: Path, tmp_path: Path) -> tuple[Path, dict[str, tuple[str, int]]]:
    """A mail directory rendered with the old key, and its files."""
    mail_dir = tmp_path / "mail"
    first = _render(users, mail_dir, OLD_KEY)
    assert first.code == 0, first.output
    return mail_dir, _snapshot(mail_dir)


@pytest.fixture
def fail_after_swap(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], None]:
    """Make the first fsync of a directory raise: the installer syncs the directories right after
    renaming the new files into place, so the failure comes after the swap, whatever the layout."""
    real_fsync = os.fsync

    def arm(error: BaseException) -> None:
        armed = [error]

        def fsync(fd: int) -> None:
            if armed and stat.S_ISDIR(os.fstat(fd).st_mode):
                raise armed.pop()
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return arm


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermissionError(13, "Permission denied"), ExitCode.ERROR),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (Terminated(), ExitCode.TERMINATED),
        (RuntimeError("a bug"), ExitCode.ERROR),
    ],
    ids=["PermissionError", "Ctrl-C", "SIGTERM", "a bug"],
)
def test_any_failure_after_the_swap_puts_the_old_files_back(
    users: Path,
    rendered: tuple[Path, dict[str, tuple[str, int]]],
    fail_after_swap: Callable[[BaseException], None],
    error: BaseException,
    code: int,
) -> None:
    mail_dir, before = rendered
    fail_after_swap(error)
    result = _render(users, mail_dir, NEW_KEY)
    assert result.code == code, result.output
    assert _snapshot(mail_dir) == before  # byte for byte, modes too: the unvalidated files are gone
    assert "Traceback" not in result.output


def test_a_permission_error_after_the_swap_says_the_files_were_put_back(
    users: Path,
    rendered: tuple[Path, dict[str, tuple[str, int]]],
    fail_after_swap: Callable[[BaseException], None],
) -> None:
    mail_dir, _ = rendered
    fail_after_swap(PermissionError(13, "Permission denied", str(mail_dir / "dovecot")))
    result = _render(users, mail_dir, NEW_KEY)
    assert "Permission denied" in result.stderr
    assert "the previous files were put back" in result.stderr
    assert "internal error" not in result.stderr


def test_a_validator_that_is_not_executable_is_refused_before_anything_is_written(
    users: Path, rendered: tuple[Path, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    mail_dir, before = rendered
    doveconf = tmp_path / "bin" / "doveconf"  # would run only after the swap (doveconf -n)
    doveconf.parent.mkdir()
    doveconf.write_text("#!/bin/sh\nexit 0\n")
    doveconf.chmod(0o644)  # not executable, even for root
    result = _render(users, mail_dir, NEW_KEY, RECONCILER_DOVECONF_COMMAND=str(doveconf))
    assert result.code == ExitCode.ERROR, result.output
    # render's preflight (as reconcile's) finds it before the first write: nothing to roll back.
    assert f"command {doveconf} not found" in result.stderr
    assert _snapshot(mail_dir) == before


@pytest.mark.parametrize("where", ["mail/dovecot", "mail/postfix", "mail/state"])
def test_a_file_where_a_mail_directory_belongs_is_one_clear_line(
    users: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text("")
    result = _render(users, tmp_path / "mail", OLD_KEY)
    assert result.code == ExitCode.ERROR
    assert "not a directory" in result.stderr.lower()
    assert "Traceback" not in result.output and "internal error" not in result.output
