"""Settings reach every mail entry point: RECONCILER_TEMPLATES_DIR / templates_dir for `reconcile`'s
mail step and `plan`'s preview, RECONCILER_MAIL_DIR for `render`; and `plan` lists mail-server
files only. No daemons: postfix/postconf/doveconf/doveadm are `true` (postmap is the real one)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.config import Settings, load_settings
from reconciler.desired import load_users
from reconciler.errors import MailServerError
from reconciler.mail import (
    PASSWD,
    SASL_PASSWD,
    SENDER_LOGIN_MAPS,
    SENDER_RELAYHOST_MAPS,
    STATE,
    default_templates_dir,
    preview,
)
from reconciler.mail.reflect import keys_for_mail
from reconciler.workflows.context import Run, SilentReporter
from reconciler.workflows.mailstep import mail_preview
from tests.fixtures.cli import CliResult, run_main
from tests.fixtures.workflow import run_mail_step

KEY = "Key12345"
MARK = "# rendered from the custom templates"
MAIL_FILES = (PASSWD, SENDER_LOGIN_MAPS, SASL_PASSWD, SENDER_RELAYHOST_MAPS)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A users repo with one SMTP user, on a gateway whose daemon commands are `true`; returns users/."""
    users = tmp_path / "repo/users"
    users.mkdir(parents=True)
    (users / "a@example.com.yaml").write_text(
        "api_user: a@example.com\napi_key: {from_env: A_KEY}\nrole: normal\naccess: {smtp: true}\n"
    )
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    # Only so postmap has a host name and skips a slow lookup.
    (postfix / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = t.localdomain\n")
    for name in ("MAIL_DIR", "TEMPLATES_DIR", "SUBMISSION_PORT", "DOVECOT_CONFIG"):
        monkeypatch.delenv(f"RECONCILER_{name}", raising=False)
    env = {
        "A_KEY": KEY,
        "RECONCILER_MAIL_FILE_GROUP": "root",
        "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
        "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
        "RECONCILER_POSTFIX_CONFIG_DIR": str(postfix),
        **{f"RECONCILER_{d}_COMMAND": "true" for d in ("POSTFIX", "POSTCONF", "DOVECONF", "DOVEADM")},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return users


@pytest.fixture
def custom_templates(tmp_path: Path) -> Path:
    """A copy of the default templates whose sender_login_maps ends with MARK."""
    templates = tmp_path / "custom-templates"
    shutil.copytree(default_templates_dir(), templates)
    login_maps = templates / f"{SENDER_LOGIN_MAPS}.j2"
    login_maps.write_text(login_maps.read_text() + f"{MARK}\n")
    return templates


# --- templates_dir -------------------------------------------------------------------------------


def test_reconcile_mail_step_honours_reconciler_templates_dir(
    repo: Path, tmp_path: Path, custom_templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEMPLATES_DIR", str(custom_templates))
    mail_dir = tmp_path / "mail"
    assert run_mail_step(repo, mail_dir, reload=False) == 0
    assert (mail_dir / SENDER_LOGIN_MAPS).read_text().endswith(MARK + "\n")
    assert "a@example.com a@example.com" in (mail_dir / SENDER_LOGIN_MAPS).read_text()


def test_plan_preview_honours_templates_dir_in_reconciler_yaml(
    repo: Path, tmp_path: Path, custom_templates: Path
) -> None:
    mail_dir = tmp_path / "mail"
    assert run_mail_step(repo, mail_dir, reload=False) == 0  # the default templates
    config = repo.parent / "reconciler.yaml"
    config.write_text(f"mail_dir: {mail_dir}\n")
    assert mail_preview(_run(load_settings(repo), repo)) == ()
    config.write_text(f"mail_dir: {mail_dir}\ntemplates_dir: {custom_templates}\n")
    settings = load_settings(repo)
    assert settings.templates_dir == str(custom_templates)
    assert mail_preview(_run(settings, repo)) == (SENDER_LOGIN_MAPS,)


def test_an_explicit_templates_dir_wins_over_the_setting(
    repo: Path, tmp_path: Path, custom_templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEMPLATES_DIR", str(tmp_path / "nowhere"))
    mail_dir = tmp_path / "mail"
    result = invoke(repo, "--mail-dir", str(mail_dir), "--templates", str(custom_templates))
    assert result.code == 0, result.output
    assert (mail_dir / SENDER_LOGIN_MAPS).read_text().endswith(MARK + "\n")


def test_a_missing_templates_dir_is_a_clear_error(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("RECONCILER_TEMPLATES_DIR", str(missing))
    with pytest.raises(MailServerError, match=f"templates directory {missing} .*RECONCILER_TEMPLATES_DIR"):
        run_mail_step(repo, tmp_path / "mail", reload=False)
    assert not (tmp_path / "mail" / SASL_PASSWD).exists()


# --- render and RECONCILER_MAIL_DIR ----------------------------------------------------------------


def invoke(users: Path, *args: str) -> CliResult:
    result = run_main(["render", "--users", str(users), "--no-reload", *args])
    assert KEY not in result.output
    return result


def test_render_falls_back_to_reconciler_mail_dir(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail_dir = tmp_path / "mail"
    monkeypatch.setenv("RECONCILER_MAIL_DIR", str(mail_dir))
    checked = invoke(repo, "--check")
    assert checked.code == 2, checked.output
    assert not mail_dir.exists()
    result = invoke(repo)
    assert result.code == 0, result.output
    assert (mail_dir / SENDER_LOGIN_MAPS).read_text().endswith("a@example.com a@example.com\n")
    assert invoke(repo, "--check").code == 0


def test_render_mail_dir_option_wins_over_the_setting(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_MAIL_DIR", str(tmp_path / "from-env"))
    result = invoke(repo, "--mail-dir", str(tmp_path / "pinned"))
    assert result.code == 0, result.output
    assert (tmp_path / "pinned" / PASSWD).is_file()
    assert not (tmp_path / "from-env").exists()


def test_render_without_any_mail_dir_is_a_clear_error(repo: Path) -> None:
    result = run_main(["render", "--users", str(repo)])
    # 1, not click's usage error 2 (which would read as "changes pending" with --check).
    assert result.code == 1, result.output
    assert "no mail directory: pass --mail-dir or set RECONCILER_MAIL_DIR" in result.output


# --- plan lists mail-server files only -------------------------------------------------------------


def test_preview_lists_the_mail_server_files_not_the_state_file(repo: Path, tmp_path: Path) -> None:
    desired = load_users(repo)
    settings = load_settings(repo)
    changed = preview(desired.users, keys_for_mail(desired), settings, mail_dir=tmp_path / "mail")
    assert sorted(changed) == sorted(MAIL_FILES)
    assert STATE not in changed


def test_plan_shows_nothing_when_only_the_state_file_differs(repo: Path, tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    assert run_mail_step(repo, mail_dir, reload=False) == 0
    state = mail_dir / STATE
    # Bookkeeping only (say, written by an older version): the mail server's files are current.
    state.write_text(state.read_text().replace("{", "{ ", 1))
    (repo.parent / "reconciler.yaml").write_text(f"mail_dir: {mail_dir}\n")
    assert mail_preview(_run(load_settings(repo), repo)) == ()


def _run(settings: Settings, users_dir: Path) -> Run:
    return Run(settings, users_dir, SilentReporter())
