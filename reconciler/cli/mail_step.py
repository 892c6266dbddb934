"""The mail-server step of `reconcile` and the mail part of `plan`, on top of reconciler.mail."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.config import Settings, load_settings
from reconciler.desired import DesiredState, load_users
from reconciler.errors import ExitCode, ValidationFailed
from reconciler.mail import keys_for_mail, preview, reflect


def mail_preview(settings: Settings, desired: DesiredState) -> tuple[str, ...]:
    """Mail files that `reconcile` would rewrite; empty when no mail directory is configured or the
    keys are not available here (a pull request from a fork cannot render sasl_passwd)."""
    if settings.mail_dir is None:
        return ()
    try:
        keys = keys_for_mail(desired)
    except ValidationFailed:
        return ()
    return preview(desired.users, keys, settings)


def run_mail_step(users_dir: Path, mail_dir: Path | None, *, reload: bool) -> int:
    settings = load_settings(users_dir)
    if mail_dir is None and settings.mail_dir is None:
        click.echo(
            "No mail directory configured (--mail-dir or RECONCILER_MAIL_DIR): mail server step skipped."
        )
        return ExitCode.OK
    desired = load_users(users_dir)
    report = reflect(
        desired.users, keys_for_mail(desired), settings, reload=reload, check=False, mail_dir=mail_dir
    )
    if not report.changed:
        click.echo(
            f"Mail files in {report.mail_dir} are up to date ({report.users} SMTP users); nothing reloaded."
        )
        return ExitCode.OK
    click.echo(f"Mail files changed in {report.mail_dir}: " + ", ".join(report.changed))
    if report.reloaded:
        click.echo("Reloaded: " + ", ".join(report.reloaded))
    return ExitCode.OK
