"""`mail_checks`: production (`full`) runs every step and fails on what is missing; `skip` (the demo)
writes the files, leaves out exactly the steps this machine cannot run and names them in one line.
Missing commands are simulated with paths that do not exist, so the tests do not depend on the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.mail import render
from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail import PASSWD, RenderedFile, install
from reconciler.mail.checks import Skipped, notice, skipped_steps
from tests.engine.conftest import Result, run_cli
from tests.fixtures.service import ADMIN_USER as ADMIN
from tests.fixtures.service import RunningService

ABSENT = "/nonexistent/reconciler-test"
NO_GROUP = "reconciler-test-no-such-group"
MISSING_COMMANDS = {
    "postfix_command": f"{ABSENT}/postfix",
    "postconf_command": f"{ABSENT}/postconf",
    "doveconf_command": f"{ABSENT}/doveconf",
    "doveadm_command": f"{ABSENT}/doveadm",
}
PASSWD_FILE = RenderedFile(PASSWD, "a@example.com:{ARGON2ID}x\n", 0o640, group=NO_GROUP, reloads="dovecot")
MAPS_FILE = RenderedFile(
    "postfix/sender_login_maps", "a@example.com a@example.com\n", 0o644, group=None, reloads="postfix"
)


def test_full_skips_nothing_even_when_everything_is_missing() -> None:
    settings = Settings(mail_checks="full", **MISSING_COMMANDS)
    assert skipped_steps(settings, [PASSWD_FILE]) == Skipped()


def test_skip_names_each_missing_command_and_the_missing_group() -> None:
    skipped = skipped_steps(Settings(mail_checks="skip", **MISSING_COMMANDS), [PASSWD_FILE, MAPS_FILE])
    steps = skipped.steps({"postfix", "dovecot"}, reload=True)
    assert steps == (
        f"postmap -s ({ABSENT}/postmap not installed)",
        f"postconf -n/-M and postfix check ({ABSENT}/postfix not installed)",
        f"doveconf -n ({ABSENT}/doveconf not installed)",
        f"postfix reload and its smoke check ({ABSENT}/postfix not installed)",
        f"Dovecot cache flush and auth check ({ABSENT}/doveconf not installed)",
        f"group '{NO_GROUP}' of dovecot/users.passwd (no such group)",
    )
    assert skipped.files([PASSWD_FILE])[0].group is None


def test_skip_lists_reloads_only_when_the_run_would_reload() -> None:
    skipped = skipped_steps(Settings(mail_checks="skip", **MISSING_COMMANDS), [MAPS_FILE])
    assert not any("reload" in step for step in skipped.steps({"postfix"}, reload=False))


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, installed commands and groups run")
def test_skip_as_root_runs_what_is_installed() -> None:
    settings = Settings(mail_checks="skip", mail_file_group="root")
    file = RenderedFile(PASSWD, "x\n", 0o640, group="root", reloads="dovecot")
    assert skipped_steps(settings, [file]).steps({"postfix", "dovecot"}, reload=True) == ()


def test_install_in_skip_mode_writes_the_files_without_the_checks(tmp_path: Path) -> None:
    settings = Settings(mail_checks="skip", **MISSING_COMMANDS)
    report = install([PASSWD_FILE, MAPS_FILE], tmp_path, settings, reload=True)
    assert set(report.changed) == {PASSWD, "postfix/sender_login_maps"}
    assert (tmp_path / PASSWD).read_text() == PASSWD_FILE.content
    assert (tmp_path / PASSWD).stat().st_mode & 0o777 == 0o640
    assert report.reloaded == () and report.smoke == ()
    assert f"postfix check ({ABSENT}/postfix not installed)" in notice(report.skipped)


def test_install_in_full_mode_refuses_the_missing_group_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(mail_checks="full", **MISSING_COMMANDS)
    with pytest.raises(MailServerError, match=f"group '{NO_GROUP}'.*does not exist"):
        install([PASSWD_FILE], tmp_path, settings, reload=True)
    assert not (tmp_path / PASSWD).exists()


def test_render_prints_one_skip_line_from_the_environment_setting(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "a@example.com.yaml").write_text(
        "api_user: a@example.com\napi_key: {from_env: A_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    env = {"A_KEY": "Key12345", "RECONCILER_MAIL_CHECKS": "skip", "RECONCILER_MAIL_FILE_GROUP": NO_GROUP}
    env |= {f"RECONCILER_{name.upper()}": value for name, value in MISSING_COMMANDS.items()}
    result = CliRunner().invoke(
        render, ["--users", str(users), "--mail-dir", str(tmp_path / "mail")], env=env, standalone_mode=False
    )
    assert result.exception is None, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Mail checks skipped")]
    assert len(lines) == 1
    assert f"group '{NO_GROUP}'" in lines[0] and f"postmap -s ({ABSENT}/postmap not installed)" in lines[0]
    assert "Key12345" not in result.output


# --- preflight: what the mail step needs is checked before the first write to the service ---------


def _reconcile(service: RunningService, root: Path, **settings: str) -> Result:
    users = root / "users"
    users.mkdir()
    (users / f"{ADMIN}.yaml").write_text(
        f"api_user: {ADMIN}\napi_key: {{from_env: RECONCILER_API_KEY}}\nrole: admin\n"
    )
    (users / "app@example.com.yaml").write_text(
        "api_user: app@example.com\napi_key: {from_env: APP_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    env = service.env() | {"APP_KEY": "App12345", "NO_COLOR": "1"}
    env |= {f"RECONCILER_{name.upper()}": value for name, value in settings.items()}
    return run_cli(["reconcile", "--auto-approve", "--mail-dir", str(root / "mail")], env, cwd=root)


def test_reconcile_refuses_before_any_write_when_the_mail_step_cannot_run(
    service: RunningService, tmp_path: Path
) -> None:
    result = _reconcile(service, tmp_path, mail_file_group=NO_GROUP, **MISSING_COMMANDS)
    assert result.code == 1
    assert "the mail step cannot run here, so nothing was applied" in result.stderr
    assert f"group '{NO_GROUP}' (setting mail_file_group) does not exist" in result.stderr
    assert f"command {ABSENT}/postfix not found" in result.stderr
    with service.client() as client:
        assert [u.api_user for u in client.list_users()] == [ADMIN]  # the service is untouched
    assert not (tmp_path / "mail").exists()


def test_reconcile_in_skip_mode_applies_and_writes_the_files(service: RunningService, tmp_path: Path) -> None:
    result = _reconcile(service, tmp_path, mail_checks="skip", mail_file_group=NO_GROUP, **MISSING_COMMANDS)
    assert result.code == 0, result.stdout + result.stderr
    with service.client() as client:
        assert "app@example.com" in [u.api_user for u in client.list_users()]
    assert "app@example.com:{ARGON2ID}" in (tmp_path / "mail" / PASSWD).read_text()
    assert sum(line.startswith("Mail checks skipped") for line in result.stdout.splitlines()) == 1
