"""`plan`, `apply` and `reconcile`: the commands that compare users/ with the service and act."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from reconciler import gateway, workflow
from reconciler.apply import Outcome, Status, failed
from reconciler.backend.http.client import ServiceClient
from reconciler.cli.common import (
    Duration,
    complete_api_users,
    emit_json,
    err,
    format_option,
    styler,
    users_option,
)
from reconciler.cli.options import note
from reconciler.cli.progress import Progress
from reconciler.cli.reports import mail_fields_json, progress_hasher
from reconciler.cli.show import read_saved_plan
from reconciler.config import Settings
from reconciler.errors import ExitCode, ReconcilerError, exit_code_for
from reconciler.mail import MailReport
from reconciler.mail.checks import notice
from reconciler.mail.hashing import Hasher
from reconciler.output import apply_to_json, render_json, render_markdown, render_text, summary_line
from reconciler.plan import Plan
from reconciler.safetext import terminal

target_option = click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATTERN",
    shell_complete=complete_api_users,
    help="Limit to api_users matching this glob (repeatable).",
)
mail_dir_option = click.option(
    "--mail-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The gateway's mail directory, as RECONCILER_MAIL_DIR: the plan previews its files.",
)
APPLY_PROGRESS_MIN = 20  # fewer changes are done before a progress line could be read
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


def _show(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        click.echo(render_json(plan), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(plan), nl=False)
    else:
        click.echo(render_text(plan, styler()), nl=False)


def _load(users_dir: Path, mail_dir: Path | None) -> workflow.Loaded:
    """users/ and settings; `--mail-dir` is the mail_dir setting for this run, so the plan's
    preview and reconcile's mail step use it exactly as they use RECONCILER_MAIL_DIR."""
    loaded = workflow.load(users_dir)
    if mail_dir is None:
        return loaded
    settings = loaded.settings.model_copy(update={"mail_dir": str(mail_dir.expanduser())})
    return replace(loaded, settings=settings)


@click.command()
@users_option
@format_option("text", "markdown", "json")
@click.option(
    "--out",
    "-out",  # Terraform's spelling, which its users type by habit
    "-o",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan for `apply PLAN.json` (-out and -o too).",
)
@click.option(
    "--detailed-exitcode",
    "-detailed-exitcode",
    "detailed",
    is_flag=True,
    help="Exit 2 when changes are pending (0 only when there is nothing to do), as Terraform's.",
)
@click.option(
    "--require-keys",
    is_flag=True,
    help="Fail (exit 1) when a key apply will need cannot be read here, instead of warning.",
)
@target_option
@allow_deletes_option
@allow_locks_option
@mail_dir_option
def plan(
    *,
    users_dir: Path,
    fmt: str,
    out: Path | None,
    detailed: bool,
    require_keys: bool,
    targets: tuple[str, ...],
    allow_deletes: int | None,
    allow_locks: int | None,
    mail_dir: Path | None,
) -> int:
    """Show what reconcile would change, without changing anything.

    Exit codes (Terraform's): 0 the plan was made, with or without changes; 1 error; 3 refused
    as unsafe; with --detailed-exitcode, 2 when changes are pending (0 only when there are none).

    \b
    Example:
      reconciler plan --format markdown > plan.md
      reconciler plan --out plan.json && reconciler apply plan.json
      reconciler plan --detailed-exitcode || [ $? = 2 ]    # CI: 2 means changes pending
      reconciler plan --mail-dir /etc/reconciler/mail
    """
    options = workflow.ApplyOptions(
        allow_deletes=allow_deletes, allow_locks=allow_locks, targets=targets, require_keys=require_keys
    )
    result = workflow.make_plan(_load(users_dir, mail_dir), options, ClickReporter())
    _show(result, fmt)
    if out is not None:
        try:
            out.write_text(render_json(result), encoding="utf-8")
        except OSError as exc:
            raise ReconcilerError(f"cannot save the plan to {out}: {exc.strerror}") from None
        note(f"Saved the plan to {out}; apply it with: reconciler apply {out}")
    code = workflow.plan_exit(result)
    return ExitCode.OK if code == ExitCode.CHANGES_PENDING and not detailed else code


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
            format_option("text", "json"),
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_apply_options
def apply(plan_file: Path | None, **options: Any) -> int:
    """Apply users/ to the service (or exactly a plan saved with `plan --out`).

    Creates, then updates and key changes, unlocks, locks and deletes last. Asks for `yes`
    unless --auto-approve (a saved plan was reviewed when it was made). Exit codes: 0 done,
    1 something failed (the rest was applied; run again to converge), cancelled, or the saved
    plan is stale; 3 refused as unsafe. --format json needs --auto-approve or a saved plan.

    \b
    Example:
      reconciler apply --auto-approve --allow-deletes 5
      reconciler apply plan.json --format json
    """
    return _run_apply(plan_file, mail=None, **options)


@click.command()
@_apply_options
@click.option(
    "--mail-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the mail files go [default: setting mail_dir (RECONCILER_MAIL_DIR)].",
)
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

    Exit codes as for apply.

    \b
    Example:
      reconciler reconcile --auto-approve --mail-dir /etc/reconciler/mail
      reconciler reconcile --auto-approve --wait-gateways 10m
    """
    return _run_apply(
        None,
        mail=workflow.MailStep(mail_dir, reload=not no_reload, hashing=_hashing_progress),
        mail_dir=mail_dir,
        wait_gateways=wait_gateways,
        **options,
    )


@contextlib.contextmanager
def _hashing_progress(scheme: str) -> Iterator[Hasher]:
    """reconcile's mail step hashes each new key (ARGON2ID: a noticeable pause per key): a
    progress line on a terminal, as `render` shows."""
    with Progress("Hashing keys") as bar:
        yield progress_hasher(scheme, bar)


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
    fmt: str,
    mail_dir: Path | None = None,
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
    loaded = _load(users_dir, mail_dir)
    if fmt == "json":
        return _run_apply_json(loaded, options, plan_file=plan_file, mail=mail, wait_gateways=wait_gateways)
    code = workflow.run_apply(loaded, options, ClickReporter(), plan_file=plan_file, mail=mail)
    if wait_gateways is None or code != ExitCode.OK:
        return code
    return _wait_for_gateways(loaded.settings, loaded.desired.digest, wait_gateways)


def _run_apply_json(
    loaded: workflow.Loaded,
    options: workflow.ApplyOptions,
    *,
    plan_file: Path | None,
    mail: workflow.MailStep | None,
    wait_gateways: float | None,
) -> int:
    if not (options.auto_approve or plan_file):
        # Like `terraform apply -json`: a pipeline cannot answer a prompt on a JSON stream.
        raise ReconcilerError("--format json needs --auto-approve (or a saved PLAN.json)")
    reporter = JsonReporter("apply" if mail is None else "reconcile", mail=mail is not None)
    if plan_file is not None:
        reporter.planned = read_saved_plan(plan_file)
    try:
        code = workflow.run_apply(loaded, options, reporter, plan_file=plan_file, mail=mail)
        if wait_gateways is not None and code == ExitCode.OK:
            with ServiceClient.from_settings(loaded.settings) as client:
                reporter.gateways_behind = gateway.wait_for_gateways(
                    client.list_gateways, loaded.desired.digest, wait_gateways
                )
            code = ExitCode.ERROR if reporter.gateways_behind else code
    except ReconcilerError as exc:
        if reporter.outcomes_seen is None:
            raise  # nothing was applied: the plain error document says it all
        emit_json(reporter.document(error=str(exc)))
        return exit_code_for(exc)
    emit_json(reporter.document(ok=code == ExitCode.OK))
    return code


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

    stream_rows = True  # JSON output keeps stdout for its one document
    streamed = False

    def warning(self, message: str) -> None:
        note(f"warning: {message}")

    def info(self, message: str) -> None:
        click.echo(message)

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        _show(plan, "text")
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


COMMANDS = (plan, apply, reconcile)
