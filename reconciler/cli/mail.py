"""`reconciler render`: reflect users/ on this mail gateway (Postfix + Dovecot), without the service.

A fleet of gateways each runs this from its own checkout (pull model); `reconcile` runs the same
step after applying to the service.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.common import emit_json, err, format_option, users_option
from reconciler.cli.progress import Progress
from reconciler.cli.reports import mail_report_json, progress_hasher
from reconciler.errors import ExitCode
from reconciler.mail import MailReport
from reconciler.mail.checks import notice
from reconciler.workflows.context import SilentReporter, open_run
from reconciler.workflows.rendering import RenderOptions
from reconciler.workflows.rendering import render as render_mail

templates_option = click.option(
    "--templates",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Jinja templates for the mail files [default: setting templates_dir "
    "(RECONCILER_TEMPLATES_DIR), else the templates packaged in reconciler/templates/].",
)


@click.command("render")
@users_option
@click.option(
    "--mail-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where dovecot/, postfix/ and state/ are written [default: setting mail_dir (RECONCILER_MAIL_DIR)].",
)
@click.option("--no-reload", is_flag=True, help="Write the files but do not reload Postfix/Dovecot.")
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing (and take no lock); exit 2 when files would change, 0 when none.",
)
@click.option(
    "--force-unlock", is_flag=True, help="Take over the mail-directory lock from a run that is gone."
)
@templates_option
@format_option("text", "json")
def render(
    *,
    users_dir: Path,
    mail_dir: Path | None,
    no_reload: bool,
    check: bool,
    force_unlock: bool,
    templates_dir: Path | None,
    fmt: str,
) -> int:
    """Render the Postfix/Dovecot files for SMTP users, validate, swap and reload.

    Only files that changed are written, and Postfix is reloaded only then (Dovecot re-reads its
    passwd-file by itself); on a failed validation, reload or smoke check the previous files are put
    back. A render holds the lock of its mail directory (shared with `reconcile`'s mail step), so a
    second run on the same directory fails fast naming the holder. Exit codes: 0 done (or, with
    --check, nothing to do), 2 with --check when files would change, 1 error.

    \b
    Example:
      reconciler render --users users --mail-dir /etc/reconciler/mail
      RECONCILER_MAIL_DIR=/etc/reconciler/mail reconciler render --users users
    """
    options = RenderOptions(mail_dir, not no_reload, check, force_unlock, templates_dir)
    with open_run(users_dir, _WarningsOnly()) as run, Progress("Hashing keys") as bar:
        scheme = run.settings.hash_scheme
        report = render_mail(run, options, lambda: progress_hasher(scheme, bar))
    if fmt == "json":
        for warning in report.warnings:
            _warn(warning)
        emit_json(mail_report_json(report, ok=True))
    else:
        show_mail_report(report)
    if check and report.changed:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


def _warn(message: str) -> None:
    err(f"warning: {message}")  # may quote the service (a refused gateway report): escaped


class _WarningsOnly(SilentReporter):
    """The Reporter of `render`: only warnings (a gateway report that failed) reach it."""

    def warning(self, message: str) -> None:
        _warn(message)


def show_mail_report(report: MailReport) -> None:
    """What a render did: files, keys hashed, reloads, smoke checks, warnings (also for reconcile)."""
    for warning in report.warnings:
        _warn(warning)
    verb = "would change" if report.check else "changed"
    if not report.changed:
        click.echo(
            f"Mail files in {report.mail_dir} are up to date ({report.users} SMTP users); nothing reloaded."
        )
        return
    for name in report.changed:
        click.echo(f"  {verb}: {name}")
    if report.check:
        click.echo(f"{len(report.changed)} mail file(s) would change ({report.users} SMTP users).")
        return
    reloaded = ", ".join(report.reloaded) or "nothing (--no-reload)"
    click.echo(
        f"{len(report.changed)} mail file(s) changed, {report.hashes} key(s) hashed; reloaded: {reloaded}."
    )
    for check in report.smoke:
        click.echo(f"  smoke check passed: {check}")
    if report.skipped:
        click.echo(notice(report.skipped))


COMMANDS = (render,)
