"""The mail step as a normal user: commands in the sbin directories are found without them on
PATH; `render` is checked before it writes anything, names the preview setting when it refuses,
and leaves no half-made mail directory behind when it fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.mail.commands import which
from tests.fixtures.cli import CliResult, run_main


@pytest.fixture
def users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    users = tmp_path / "repo/users"
    users.mkdir(parents=True)
    (users / "a@example.com.yaml").write_text(
        "api_user: a@example.com\napi_key: {from_env: A_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = t.localdomain\n")
    dovecot = tmp_path / "dovecot.conf"
    dovecot.write_text("")
    env = {
        "A_KEY": "Key12345",
        "RECONCILER_MAIL_FILE_GROUP": "root",
        "RECONCILER_FINGERPRINT_SECRET": "s3cret",
        "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
        "RECONCILER_POSTFIX_CONFIG_DIR": str(postfix),
        "RECONCILER_DOVECOT_CONFIG": str(dovecot),
        **{f"RECONCILER_{d}_COMMAND": "true" for d in ("POSTFIX", "POSTCONF", "DOVECONF", "DOVEADM")},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return users


def _render(users: Path, mail_dir: Path) -> CliResult:
    return run_main(["render", "--users", str(users), "--mail-dir", str(mail_dir), "--no-reload"])


@pytest.mark.skipif(not Path("/usr/sbin/postconf").exists(), reason="needs Debian's postfix")
def test_sbin_commands_are_found_without_sbin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    assert shutil.which("postconf") is None  # the plain PATH of a normal user lacks it
    assert which("postconf") == "/usr/sbin/postconf"
    assert which("postmap") == "/usr/sbin/postmap"


@pytest.mark.skipif(not Path("/usr/sbin/postmap").exists(), reason="needs Debian's postfix")
def test_render_finds_postmap_in_sbin_with_a_plain_path(
    users: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    result = _render(users, tmp_path / "mail")
    assert result.code == 0, result.output
    assert (tmp_path / "mail" / "postfix" / "sasl_passwd").exists()


def test_a_refused_render_names_the_preview_setting_and_writes_nothing(users: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    result = run_main(
        ["render", "--users", str(users), "--mail-dir", str(mail_dir)],
        env={"RECONCILER_DOVECONF_COMMAND": "/nonexistent/doveconf"},
    )
    assert result.code == 1
    assert "command /nonexistent/doveconf not found" in result.stderr
    assert "RECONCILER_MAIL_CHECKS=skip" in result.stderr
    assert not mail_dir.exists()


def test_a_render_that_fails_after_writing_leaves_no_mail_directory(users: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    result = run_main(
        ["render", "--users", str(users), "--mail-dir", str(mail_dir)],
        env={"RECONCILER_POSTFIX_COMMAND": "false"},  # `postfix check` fails after the swap
    )
    assert result.code == 1, result.output
    assert not mail_dir.exists()  # no state/fingerprint.secret left for the next run to trust
