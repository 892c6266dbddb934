"""`plan`, `apply` and `reconcile`: the commands that compare users/ with the service and act."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import (
    Duration,
    complete_api_users,
    emit_json,
    err,
    format_option,
    users_option,
)
from reconciler.cli.console import console_apply, console_plan
from reconciler.cli.options import note
from reconciler.cli.progress import Progress
from reconciler.cli.reporters import ClickReporter, JsonReporter, show_plan
from reconciler.cli.reports import progress_hasher
from reconciler.errors import ExitCode, ReconcilerError, exit_code_for
from reconciler.mail.hashing import Hasher
from reconciler.output import render_json
from reconciler.workflows.applying import ApplyOptions, run_apply
from reconciler.workflows.context import Run, open_run
from reconciler.workflows.gateways import wait_for_run_gateways
from reconciler.workflows.mailstep import MailStep
from reconciler.workflows.planning import PlanOptions, plan_exit
from reconciler.workflows.planning import plan as make_plan
from reconciler.workflows.saved import load_saved_plan

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
    if (console := console_plan(users_dir, fmt, targets, out)) is not None:
        # A console backend: the plan is a checklist (reconciler/cli/console.py); exit 2 only if asked.
        return ExitCode.OK if console == ExitCode.CHANGES_PENDING and not detailed else console
    options = PlanOptions(
        allow_deletes=allow_deletes, allow_locks=allow_locks, targets=targets, require_keys=require_keys
    )
    mail_dir = mail_dir.expanduser() if mail_dir is not None else None
    with open_run(users_dir, ClickReporter(), mail_dir=mail_dir, load_users_now=True) as run:
        result = make_plan(run, options)
    show_plan(result, fmt)
    if out is not None:
        try:
            out.write_text(render_json(result), encoding="utf-8")
        except OSError as exc:
            raise ReconcilerError(f"cannot save the plan to {out}: {exc.strerror}") from None
        note(f"Saved the plan to {out}; apply it with: reconciler apply {out}")
    code = plan_exit(result)
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
        mail=MailStep(mail_dir, reload=not no_reload, hashing=_hashing_progress),
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
    mail: MailStep | None,
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
    if (console := console_apply(users_dir, targets, fmt, mail, mail_dir)) is not None:
        return console  # a console backend: a guided session (reconciler/cli/console.py)
    options = ApplyOptions(
        auto_approve=auto_approve,
        allow_deletes=allow_deletes,
        allow_locks=allow_locks,
        targets=targets,
        force_unlock=force_unlock,
        lock_timeout=lock_timeout,
    )
    if fmt == "json":
        if not (auto_approve or plan_file):
            # Like `terraform apply -json`: a pipeline cannot answer a prompt on a JSON stream.
            raise ReconcilerError("--format json needs --auto-approve (or a saved PLAN.json)")
        reporter = JsonReporter("apply" if mail is None else "reconcile", mail=mail is not None)
        with open_run(users_dir, reporter, mail_dir=mail_dir, load_users_now=True) as run:
            return _run_apply_json(
                run, reporter, options, plan_file=plan_file, mail=mail, wait_gateways=wait_gateways
            )
    with open_run(users_dir, ClickReporter(), mail_dir=mail_dir, load_users_now=True) as run:
        code = run_apply(run, options, plan_file=plan_file, mail=mail)
        if wait_gateways is None or code != ExitCode.OK:
            return code
        return _wait_for_gateways(run, wait_gateways)


def _run_apply_json(
    run: Run,
    reporter: JsonReporter,
    options: ApplyOptions,
    *,
    plan_file: Path | None,
    mail: MailStep | None,
    wait_gateways: float | None,
) -> int:
    if plan_file is not None:
        reporter.planned = load_saved_plan(plan_file)
    try:
        code = run_apply(run, options, plan_file=plan_file, mail=mail)
        if wait_gateways is not None and code == ExitCode.OK:
            reporter.gateways_behind = wait_for_run_gateways(run, wait_gateways)
            code = ExitCode.ERROR if reporter.gateways_behind else code
    except ReconcilerError as exc:
        if reporter.outcomes_seen is None:
            raise  # nothing was applied: the plain error document says it all
        emit_json(reporter.document(error=str(exc)))
        return exit_code_for(exc)
    emit_json(reporter.document(ok=code == ExitCode.OK))
    return code


def _wait_for_gateways(run: Run, timeout: float) -> int:
    digest = run.desired.digest
    click.echo(f"Waiting up to {timeout:g} s for every gateway to serve users/ {digest[:12]} ...")
    behind = wait_for_run_gateways(run, timeout)
    if behind:
        err(f"error: gateways still behind after {timeout:g} s: " + ", ".join(behind))
        return ExitCode.ERROR
    click.echo("Every reporting gateway serves this users/.")
    return ExitCode.OK


COMMANDS = (plan, apply, reconcile)
