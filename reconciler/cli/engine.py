"""`plan`, `apply` and `reconcile`: the commands that compare users/ with the service and act."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from reconciler import gateway, workflow
from reconciler.apply import Outcome, Status, failed
from reconciler.cli.common import Duration, err, format_option, use_color, users_option
from reconciler.client import ServiceClient
from reconciler.config import Settings
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.mail import MailReport
from reconciler.mail.checks import notice
from reconciler.output import render_json, render_markdown, render_text, summary_line
from reconciler.plan import Plan
from reconciler.safetext import terminal

target_option = click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATTERN",
    help="Limit to api_users matching this glob (repeatable).",
)
allow_deletes_option = click.option(
    "--allow-deletes",
    type=click.IntRange(min=0),
    metavar="N",
    help="Accept up to N deletes (overrides the guards).",
)
allow_locks_option = click.option(
    "--allow-locks",
    type=click.IntRange(min=0),
    metavar="N",
    help="Accept up to N locks (overrides the guards).",
)


def _style(text: str, colour: str) -> str:
    if colour == "bold":
        return click.style(text, bold=True)
    return click.style(text, fg=colour)


def _styler() -> Callable[[str, str], str]:
    return _style if use_color() else (lambda text, _colour: text)


def _show(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        click.echo(render_json(plan), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(plan), nl=False)
    else:
        click.echo(render_text(plan, _styler()), nl=False)


@click.command()
@users_option
@format_option("text", "markdown", "json", default="text")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan for `apply PLAN.json`.",
)
@target_option
@allow_deletes_option
@allow_locks_option
def plan(
    *,
    users_dir: Path,
    fmt: str,
    out: Path | None,
    targets: tuple[str, ...],
    allow_deletes: int | None,
    allow_locks: int | None,
) -> int:
    """Show what reconcile would change, without changing anything.

    Exit codes: 0 nothing to do, 2 changes pending, 1 error, 3 refused as unsafe.

    \b
    Example:
      reconciler plan --format markdown > plan.md
      reconciler plan --out plan.json && reconciler apply plan.json
    """
    options = workflow.ApplyOptions(allow_deletes=allow_deletes, allow_locks=allow_locks, targets=targets)
    result = workflow.make_plan(workflow.load(users_dir), options, ClickReporter())
    _show(result, fmt)
    if out is not None:
        try:
            out.write_text(render_json(result), encoding="utf-8")
        except OSError as exc:
            raise ReconcilerError(f"cannot save the plan to {out}: {exc.strerror}") from None
        click.echo(f"Saved the plan to {out}; apply it with: reconciler apply {out}", err=True)
    return workflow.plan_exit(result)


def _apply_options(fn: Callable[..., int]) -> Callable[..., int]:
    for option in reversed(
        [
            users_option,
            click.option("--auto-approve", is_flag=True, help="Apply without asking (CI)."),
            allow_deletes_option,
            allow_locks_option,
            target_option,
            click.option(
                "--force-unlock",
                is_flag=True,
                help="Break the reconcile lease (or local lock) of a run that is gone; the service logs it.",
            ),
            click.option(
                "--lock-timeout",
                type=Duration(),
                default="0s",
                metavar="DURATION",
                help="Wait this long (30s, 5m) for another run's lease instead of failing at once.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_apply_options
def apply(plan_file: Path | None, **options: Any) -> int:
    """Apply users/ to the service (or exactly a plan saved with `plan --out`).

    Creates, then updates and key changes, unlocks, locks and deletes last. Exit codes: 0 done,
    1 something failed (the rest was applied; run again to converge), 3 refused as unsafe.

    \b
    Example:
      reconciler apply --auto-approve --allow-deletes 5
    """
    return _run_apply(plan_file, mail=None, **options)


@click.command()
@_apply_options
@click.option("--mail-dir", type=click.Path(path_type=Path, file_okay=False), help="Where the mail files go.")
@click.option("--no-reload", is_flag=True, help="Write mail files but do not reload Postfix/Dovecot.")
@click.option(
    "--wait-gateways",
    metavar="DURATION",
    type=Duration(),
    help="Then wait until every reporting gateway serves this users/ (e.g. 90s, 10m); exit 1 naming "
    "the gateways still behind when the time is up.",
)
def reconcile(mail_dir: Path | None, no_reload: bool, wait_gateways: float | None, **options: Any) -> int:
    """Apply users/ to the service, then reflect SMTP users on the mail server.

    \b
    Example:
      reconciler reconcile --auto-approve --mail-dir /etc/reconciler/mail
      reconciler reconcile --auto-approve --wait-gateways 10m
    """
    return _run_apply(
        None, mail=workflow.MailStep(mail_dir, reload=not no_reload), wait_gateways=wait_gateways, **options
    )


def _run_apply(
    plan_file: Path | None,
    *,
    mail: workflow.MailStep | None,
    users_dir: Path,
    auto_approve: bool,
    allow_deletes: int | None,
    allow_locks: int | None,
    targets: tuple[str, ...],
    force_unlock: bool,
    lock_timeout: float,
    wait_gateways: float | None = None,
) -> int:
    options = workflow.ApplyOptions(
        auto_approve=auto_approve,
        allow_deletes=allow_deletes,
        allow_locks=allow_locks,
        targets=targets,
        force_unlock=force_unlock,
        lock_timeout=lock_timeout,
    )
    loaded = workflow.load(users_dir)
    code = workflow.run_apply(loaded, options, ClickReporter(), plan_file=plan_file, mail=mail)
    if wait_gateways is None or code != ExitCode.OK:
        return code
    return _wait_for_gateways(loaded.settings, loaded.desired.digest, wait_gateways)


def _wait_for_gateways(settings: Settings, digest: str, timeout: float) -> int:
    click.echo(f"Waiting up to {timeout:g} s for every gateway to serve users/ {digest[:12]} ...")
    with ServiceClient.from_settings(settings) as client:
        behind = gateway.wait_for_gateways(client.list_gateways, digest, timeout)
    if behind:
        click.echo(f"error: gateways still behind after {timeout:g} s: " + ", ".join(behind), err=True)
        return ExitCode.ERROR
    click.echo("Every reporting gateway serves this users/.")
    return ExitCode.OK


class ClickReporter:
    """The workflow's Reporter at a terminal or in a CI log."""

    def warning(self, message: str) -> None:
        err(f"warning: {message}")

    def info(self, message: str) -> None:
        click.echo(message)

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        _show(plan, "text")
        if not ask:
            return True
        if not sys.stdin.isatty():
            raise ReconcilerError("refusing to apply without --auto-approve: stdin is not a terminal")
        return click.confirm("Apply these changes?", default=False)

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[Callable[[Outcome], None]]:
        """One line per change the moment it completes, numbered: the outcome table and the
        progress at once, in a CI log as on a terminal (a bar hid every outcome until the end)."""
        width = len(str(total))
        done = 0
        click.echo("")

        def advance(outcome: Outcome) -> None:
            nonlocal done
            done += 1
            click.echo(f"[{done:>{width}}/{total}] {_outcome_row(outcome)}")

        yield advance

    def outcomes(self, outcomes: list[Outcome]) -> None:
        _summary(outcomes)

    def pending(self, plan: Plan) -> None:
        click.echo("Still pending after apply: " + summary_line(plan), err=True)
        for change in plan.changes:
            fields = ", ".join(f.field for f in change.fields) or "api_key"
            err(f"  {change.action.value} {terminal(change.api_user)}: {fields}")

    def mail(self, report: MailReport | None) -> None:
        if report is None:
            click.echo(
                "No mail directory configured (--mail-dir or RECONCILER_MAIL_DIR): mail server step skipped."
            )
        elif not report.changed:
            click.echo(
                f"Mail files in {report.mail_dir} are up to date ({report.users} SMTP users); "
                "nothing reloaded."
            )
        else:
            click.echo(f"Mail files changed in {report.mail_dir}: " + ", ".join(report.changed))
            click.echo(f"Keys hashed: {report.hashes} of {report.users} SMTP users")
            if report.reloaded:
                click.echo("Reloaded: " + ", ".join(report.reloaded))
            if report.smoke:
                click.echo("Smoke checks passed: " + "; ".join(report.smoke))
            if report.skipped:
                click.echo(notice(report.skipped))
        for warning in report.warnings if report is not None else ():
            click.echo(f"warning: {warning}", err=True)


def _outcome_row(outcome: Outcome) -> str:
    name = terminal(outcome.change.api_user)  # live names are untrusted too
    status = outcome.status.value + (f": {terminal(outcome.detail)}" if outcome.detail else "")
    colour = {
        Status.OK: "green",
        Status.FAILED: "red",
        Status.SKIPPED: "yellow",
        Status.CHANGED: "yellow",
    }[outcome.status]
    return f"{name}  {outcome.change.action.value.ljust(7)} " + _styler()(status, colour)


def _summary(outcomes: list[Outcome]) -> None:
    bad = failed(outcomes)
    click.echo(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} changes applied.")
    changed = sorted({o.change.api_user for o in outcomes if o.status is Status.CHANGED})
    if changed:
        click.echo(
            f"Changed on the service since the plan, left as they are: {', '.join(changed)}. "
            "Run `reconciler plan` to see their new state.",
            err=True,
        )
    if bad:
        click.echo(
            "Some changes did not apply; the others did. Run the same command again to converge.", err=True
        )


COMMANDS = (plan, apply, reconcile)
