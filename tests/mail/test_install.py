"""The installer and the `render` command without daemons: unreadable files, the rollback's
refresh, and the mail-directory lock. Commands are faked where a daemon would be needed."""

from __future__ import annotations

import importlib
import os
import pathlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import Settings
from reconciler.errors import LockHeld, MailServerError
from reconciler.mail import PASSWD, SASL_PASSWD, AuthProbe, RenderedFile, SmokeFailed, install
from reconciler.run.lock import reconcile_lock
from reconciler.secrets import ApiKey
from reconciler.workflows.mailstep import mail_lock_scope
from tests.fixtures.cli import CliResult, run_main
from tests.fixtures.workflow import run_mail_step

# The module, not the function of the same name that reconciler.mail exports.
commands_module = importlib.import_module("reconciler.mail.commands")
smoke_module = importlib.import_module("reconciler.mail.smoke")
state_module = importlib.import_module("reconciler.mail.served")
KEY = "Key12345"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A users repo with one SMTP user whose key comes from the environment; returns users/."""
    users = tmp_path / "users"
    users.mkdir()
    (users / "a@example.com.yaml").write_text(
        "api_user: a@example.com\napi_key: {from_env: A_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    return users


def run_render(users: Path, mail_dir: Path, *args: str) -> CliResult:
    result = run_main(
        ["render", "--users", str(users), "--mail-dir", str(mail_dir), *args],
        env={
            "A_KEY": KEY,
            "RECONCILER_MAIL_FILE_GROUP": "root",
            "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
        },
    )
    assert KEY not in result.output
    return result


# --- unreadable files -----------------------------------------------------------------------------


def _mail_tree(mail_dir: Path) -> None:
    for name in ("dovecot", "postfix", "state"):
        (mail_dir / name).mkdir(parents=True)
    (mail_dir / SASL_PASSWD).write_text(f"a@example.com a@example.com:{KEY}\n")
    (mail_dir / "state/fingerprints.json").write_text('{"version": 1, "users": {}}\n')


@pytest.mark.parametrize("args", [("--check",), ("--no-reload",)], ids=["check", "write"])
def test_unreadable_mail_file_is_a_clear_error(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: Sequence[str]
) -> None:
    # Tests run as root, which reads any file: a non-root run against a root-owned 0600 mail dir
    # is simulated by making every open under the mail dir fail as it would for that user.
    mail_dir = tmp_path / "mail"
    _mail_tree(mail_dir)
    real_open = pathlib.Path.open

    def denied(self: Path, *a: Any, **kw: Any) -> Any:
        if self.is_relative_to(mail_dir):
            raise PermissionError(13, os.strerror(13), str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "open", denied)
    result = run_render(repo, mail_dir, *args)
    assert "internal error" not in result.stderr, result.stderr
    assert result.code == 1
    assert "error: cannot read " + str(mail_dir) in result.output
    assert "Permission denied" in result.output


def test_a_directory_where_a_mail_file_belongs_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    _mail_tree(mail_dir)
    (mail_dir / SASL_PASSWD).unlink()
    (mail_dir / SASL_PASSWD).mkdir()
    result = run_render(repo, mail_dir, "--check")
    assert "internal error" not in result.stderr, result.stderr
    assert result.code == 1
    assert f"error: cannot read {mail_dir / SASL_PASSWD}: Is a directory" in result.output


def test_unreadable_state_file_is_an_error_not_a_silent_rehash(tmp_path: Path) -> None:
    (tmp_path / "state/fingerprints.json").mkdir(parents=True)
    with pytest.raises(MailServerError, match=r"cannot read .*fingerprints\.json: Is a directory"):
        state_module.read_previous(tmp_path)
    assert state_module.read_previous(tmp_path / "none") == {}


# --- rollback -------------------------------------------------------------------------------------


class FakeCommands:
    """Stands in for `run`: Dovecot with an auth cache, every command succeeds."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], **_: Any) -> str:
        self.commands.append(list(command))
        return "1M\n" if command[-2:] == ["-h", "auth_cache_size"] else ""

    def count(self, *tail: str) -> int:
        return sum(1 for c in self.commands if c[-len(tail) :] == list(tail))


def test_rollback_flushes_the_dovecot_auth_cache_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = FakeCommands()
    monkeypatch.setattr(commands_module, "run", commands)

    def smoke_fails(*_: Any, **__: Any) -> str:
        raise SmokeFailed("smoke check: Dovecot refused the new key of a@example.com")

    monkeypatch.setattr(smoke_module, "smoke_dovecot_auth", smoke_fails)
    old = "a@example.com:{ARGON2ID}$argon2id$old\n"
    (tmp_path / "dovecot").mkdir()
    (tmp_path / PASSWD).write_text(old)
    new = RenderedFile(PASSWD, "a@example.com:{ARGON2ID}$argon2id$new\n", 0o640, "root", "dovecot")
    probe = AuthProbe("a@example.com", ApiKey(KEY))

    with pytest.raises(MailServerError, match="refreshed dovecot auth cache again") as info:
        install([new], tmp_path, Settings(), reload=True, probes=[probe])

    assert (tmp_path / PASSWD).read_text() == old
    # Once for the new file, once more after the old one was put back.
    assert commands.count("auth", "cache", "flush") == 2
    assert KEY not in str(info.value)


# --- the mail-directory lock ----------------------------------------------------------------------


def _hold_mail_lock(users: Path, mail_dir: Path, command: str = "reconcile") -> Any:
    return reconcile_lock(users.parent / ".reconciler", mail_lock_scope(mail_dir), command)


def test_render_fails_fast_while_the_mail_lock_is_held(repo: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    with _hold_mail_lock(repo, mail_dir) as holder:
        result = run_render(repo, mail_dir, "--no-reload")
    assert "internal error" not in result.stderr, result.stderr
    assert result.code == 1
    assert f"mail directory {mail_dir} is busy" in result.output
    assert holder.describe() in result.output
    assert not mail_dir.exists()  # nothing was written


def test_render_force_unlock_takes_over_and_releases(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def fake_reflect(*_: Any, mail_dir: Path, **__: Any) -> Any:
        calls.append(mail_dir)
        raise MailServerError("stop here")

    monkeypatch.setattr("reconciler.workflows.rendering.reflect", fake_reflect)
    mail_dir = tmp_path / "mail"
    with _hold_mail_lock(repo, mail_dir):
        result = run_render(repo, mail_dir, "--force-unlock")
    assert (result.code, calls) == (1, [mail_dir])
    assert "stop here" in result.output
    assert list((repo.parent / ".reconciler").glob("*.lock")) == []


def test_render_check_takes_no_lock(repo: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    with _hold_mail_lock(repo, mail_dir):
        result = run_render(repo, mail_dir, "--check")
    assert result.code == 2, result.output


def test_the_mail_step_of_reconcile_takes_the_same_lock(repo: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    with (
        _hold_mail_lock(repo, mail_dir / "." / "postfix" / "..", command="render") as holder,
        pytest.raises(LockHeld, match="is busy") as info,
    ):
        run_mail_step(repo, mail_dir, reload=False)
    assert holder.describe() in str(info.value)
    assert not mail_dir.exists()
