"""The workflows' `Reporter` at a terminal or in a CI log (`ClickReporter`), and for
`--format json` (`JsonReporter`, one document at the end); the plan shown in a format."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from reconciler.cli.common import err, out, styler
from reconciler.cli.options import note
from reconciler.cli.progress import Progress
from reconciler.cli.reports import mail_fields_json
from reconciler.errors import ReconcilerError
from reconciler.executor import Outcome, Status, failed
from reconciler.mail import MailReport
from reconciler.mail.checks import notice
from reconciler.output import apply_to_json, render_json, render_markdown, render_text, summary_line
from reconciler.plan import Plan
from reconciler.safetext import terminal

APPLY_PROGRESS_MIN = 20  # fewer changes are done before a progress line could be read


def show_plan(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        click.echo(render_json(plan), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(plan), nl=False)
    else:
        click.echo(render_text(plan, styler()), nl=False)


class ClickReporter:
    """The workflow's Reporter at a terminal or in a CI log."""

    stream_rows = True  # JSON output keeps stdout for its one document
    streamed = False

    def warning(self, message: str) -> None:
        note(f"warning: {message}")

    def info(self, message: str) -> None:
        out(message)

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        show_plan(plan, "text")
        if not ask:
            return True
        if not sys.stdin.isatty():
            raise ReconcilerError("refusing to apply without --auto-approve: stdin is not a terminal")
        # Terraform's convention, which operators rely on: `y` or Enter must not fire by accident.
        answer = click.prompt(
            "Do you want to apply these changes? Only 'yes' will be accepted to approve.\n  Enter a value",
            default="",
            show_default=False,
        )
        return str(answer).strip() == "yes"

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[Callable[[Outcome], None]]:
        """Each change the moment it completes: on a terminal a progress bar (stderr) and the table
        at the end; elsewhere (a CI log) one numbered line per change, so the log shows each outcome
        as it happens (a bar that sat at 0 % and jumped per phase hid them all until the end)."""
        enabled = None if total >= APPLY_PROGRESS_MIN else False
        width = len(str(total))
        done = 0
        with Progress("Applying", total, enabled=enabled) as bar:
            self.streamed = self.stream_rows and not bar.enabled
            if self.streamed:
                click.echo("")

            def advance(outcome: Outcome) -> None:
                nonlocal done
                done += 1
                bar.advance()
                if self.streamed:
                    click.echo(f"[{done:>{width}}/{total}] {_outcome_row(outcome)}")

            yield advance

    def outcomes(self, outcomes: list[Outcome]) -> None:
        if self.streamed:  # each line was printed as its change completed
            _summary(outcomes)
        else:
            _report(outcomes)

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
            err(f"warning: {warning}")


def _outcome_row(outcome: Outcome) -> str:
    name = terminal(outcome.change.api_user)  # live names are untrusted too
    status = outcome.status.value + (f": {terminal(outcome.detail)}" if outcome.detail else "")
    colour = {
        Status.OK: "green",
        Status.FAILED: "red",
        Status.SKIPPED: "yellow",
        Status.CHANGED: "yellow",
    }[outcome.status]
    return f"{name}  {outcome.change.action.value.ljust(7)} " + styler()(status, colour)


class JsonReporter(ClickReporter):
    """The workflow's Reporter for `--format json`: collects what happened and prints one
    document at the end (docs/schemas/apply.schema.json); warnings still go to stderr."""

    stream_rows = False

    def __init__(self, command: str, *, mail: bool) -> None:
        self.command = command
        self.planned: Plan | None = None
        self.outcomes_seen: list[Outcome] | None = None
        self.still_pending: Plan | None = None
        self.mail_json: dict[str, Any] | None = {"skipped": True} if mail else None
        self.gateways_behind: list[str] | None = None  # --wait-gateways: who had not caught up

    def info(self, message: str) -> None:
        pass  # the document says it

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        self.planned = plan
        return True  # --auto-approve was checked before the run

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[Callable[[Outcome], None]]:
        with ClickReporter.progress(self, total) as advance:
            yield advance

    def outcomes(self, outcomes: list[Outcome]) -> None:
        self.outcomes_seen = outcomes

    def pending(self, plan: Plan) -> None:
        self.still_pending = plan

    def mail(self, report: MailReport | None) -> None:
        self.mail_json = (
            {"skipped": True} if report is None else {"skipped": False, **mail_fields_json(report)}
        )

    def document(self, *, ok: bool = False, error: str | None = None) -> dict[str, Any]:
        document = apply_to_json(
            self.command,
            ok=ok and error is None,
            plan=self.planned,
            outcomes=self.outcomes_seen or [],
            pending=self.still_pending,
            mail=self.mail_json,
            error=error,
        )
        if self.gateways_behind is not None:
            document["gateways_behind"] = self.gateways_behind
        return document


def _report(outcomes: list[Outcome]) -> None:
    names = {id(o): terminal(o.change.api_user) for o in outcomes}  # live names are untrusted too
    width = max(len(name) for name in names.values())
    click.echo("")
    click.echo(f"{'API user'.ljust(width)}  {'action'.ljust(7)}  outcome")
    for o in outcomes:
        status = o.status.value + (f": {terminal(o.detail)}" if o.detail else "")
        colour = {
            Status.OK: "green",
            Status.FAILED: "red",
            Status.SKIPPED: "yellow",
            Status.CHANGED: "yellow",
        }[o.status]
        click.echo(
            f"{names[id(o)].ljust(width)}  {o.change.action.value.ljust(7)}  " + styler()(status, colour)
        )
    _summary(outcomes)


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
