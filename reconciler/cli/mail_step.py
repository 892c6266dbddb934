"""The mail-server step of `reconcile` and the mail part of `plan`, on top of reconciler.mail."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from reconciler.cli.progress import Progress
from reconciler.config import Settings, load_settings
from reconciler.desired import DesiredState, load_users
from reconciler.errors import ExitCode, LockHeld, ValidationFailed
from reconciler.mail import MailReport, keys_for_mail, preview, reflect
from reconciler.mail.hashing import Hasher, make_hasher
from reconciler.mail.reflect import mail_dir_from
from reconciler.output import OUTPUT_FORMAT_VERSION
from reconciler.secrets import ApiKey
from reconciler.state import LockInfo, reconcile_lock


def mail_lock_scope(mail_dir: Path) -> str:
    """The lock scope of one mail directory: `render` and `reconcile`'s mail step on this host share
    it, so two runs never stage, swap or roll back the same files at once."""
    return f"mail:{mail_dir.resolve()}"


@contextlib.contextmanager
def mail_lock(
    users_dir: Path, settings: Settings, mail_dir: Path, command: str, *, force: bool = False
) -> Iterator[LockInfo]:
    """Hold the mail-directory lock (in the same state directory as the service lock). `reconcile`
    takes it inside its service lock, never the other way round, so the two cannot deadlock."""
    state_dir = users_dir.parent / settings.state_dir
    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(
                reconcile_lock(state_dir, mail_lock_scope(mail_dir), command, force=force)
            )
        except LockHeld as exc:
            raise LockHeld(f"mail directory {mail_dir} is busy: {exc}") from None
        yield info


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


def run_mail_step(users_dir: Path, mail_dir: Path | None, *, reload: bool, force: bool = False) -> int:
    """The mail step of `reconcile`, called under the service lock; takes the mail-directory lock
    too, so a `render` (say, from cron) on the same directory waits its turn (fails fast)."""
    settings = load_settings(users_dir)
    if mail_dir is None and settings.mail_dir is None:
        click.echo(
            "No mail directory configured (--mail-dir or RECONCILER_MAIL_DIR): mail server step skipped."
        )
        return ExitCode.OK
    target = mail_dir_from(settings, mail_dir)
    with mail_lock(users_dir, settings, target, "reconcile", force=force):
        desired = load_users(users_dir)
        report = reflect(
            desired.users, keys_for_mail(desired), settings, reload=reload, check=False, mail_dir=target
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


class _ProgressHasher:
    """A real hasher that advances a progress line per key hashed (the slow part of a render)."""

    def __init__(self, inner: Hasher, bar: Progress) -> None:
        self.inner, self.bar = inner, bar

    @property
    def scheme(self) -> str:
        return self.inner.scheme

    def __call__(self, key: ApiKey) -> str:
        hashed = self.inner(key)
        self.bar.advance()
        return hashed


def progress_hasher(scheme: str, bar: Progress) -> Hasher:
    return _ProgressHasher(make_hasher(scheme), bar)


def mail_report_json(report: MailReport, *, ok: bool) -> dict[str, Any]:
    """`render --format json`, and the `mail` part of `reconcile --format json` (docs/cli-json.md)."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": ok,
        **mail_fields_json(report),
    }


def mail_fields_json(report: MailReport) -> dict[str, Any]:
    return {
        "mail_dir": str(report.mail_dir),
        "check": report.check,
        "changed": list(report.changed),
        "reloaded": list(report.reloaded),
        "smoke": list(report.smoke),
        "hashes": report.hashes,
        "users": report.users,
    }
