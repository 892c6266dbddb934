"""`plan`, `apply` and `reconcile`: the commands that compare users/ with the service and act."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from reconciler import engine
from reconciler.apply import KeyMaterial, Outcome, Status, apply_plan, failed
from reconciler.cli.common import handle_errors, use_color, users_option
from reconciler.client import ServiceClient
from reconciler.config import Settings, load_settings
from reconciler.desired import DesiredState, load_users
from reconciler.errors import Cancelled, ExitCode, ReconcilerError, StalePlan, ValidationFailed
from reconciler.output import plan_from_json, render_json, render_markdown, render_text, summary_line
from reconciler.plan import Guards, Plan, raise_if_unsafe
from reconciler.secrets import ResolvedKeys
from reconciler.state import AuditLog, actor, git_commit, reconcile_lock

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


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    desired: DesiredState
    users_dir: Path


def _load(users_dir: Path) -> Loaded:
    engine.refuse_missing_users_dir(users_dir)
    return Loaded(load_settings(users_dir), load_users(users_dir), users_dir)


def _resolve(loaded: Loaded, targets: tuple[str, ...], *, require_all: bool) -> ResolvedKeys:
    """The keys of the users in scope, resolved once per run. For plan, absent keys (a fork's pull
    request) only skip key checks, but a key that is there and wrong fails the plan, not only the
    apply after the merge. apply needs every key: otherwise a user's key check would be skipped
    and a rotation silently never applied."""
    resolved = engine.resolve_keys(
        loaded.desired, engine.targeted_names(loaded.desired, targets), settings=loaded.settings
    )
    for warning in resolved.warnings:
        click.echo(f"warning: {warning}", err=True)
    if require_all:
        resolved.raise_if_missing()
    elif resolved.unusable:
        raise ValidationFailed(list(resolved.unusable))
    return resolved


def _fresh_plan(
    loaded: Loaded,
    client: ServiceClient,
    resolved: ResolvedKeys,
    guards: Guards,
    targets: tuple[str, ...],
    *,
    mail: bool = True,
) -> Plan:
    live = client.list_users()
    plan = engine.compute_plan(
        loaded.desired, live, resolved, settings=loaded.settings, guards=guards, targets=targets
    )
    return _with_mail_preview(plan, loaded) if mail else plan


def _with_mail_preview(plan: Plan, loaded: Loaded) -> Plan:
    from reconciler.cli.mail_step import mail_preview

    try:
        files = mail_preview(loaded.settings, loaded.desired)
    except ReconcilerError as exc:
        return replace(plan, notes=(*plan.notes, f"Mail files were not compared: {exc}"))
    return replace(plan, mail_files=files) if files else plan


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


def _plan_exit(plan: Plan) -> int:
    if plan.refusals:
        return ExitCode.UNSAFE
    return ExitCode.CHANGES_PENDING if not plan.empty else ExitCode.OK


@click.command()
@users_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan for `apply PLAN.json`.",
)
@target_option
@allow_deletes_option
@allow_locks_option
@handle_errors
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
    loaded = _load(users_dir)
    guards = engine.guards_from(loaded.settings, allow_deletes, allow_locks)
    resolved = _resolve(loaded, targets, require_all=False)
    with ServiceClient.from_settings(loaded.settings) as client:
        result = _fresh_plan(loaded, client, resolved, guards, targets)
    _show(result, fmt)
    if out is not None:
        try:
            out.write_text(render_json(result), encoding="utf-8")
        except OSError as exc:
            raise ReconcilerError(f"cannot save the plan to {out}: {exc.strerror}") from None
        click.echo(f"Saved the plan to {out}; apply it with: reconciler apply {out}", err=True)
    return _plan_exit(result)


def _apply_options(fn: Callable[..., int]) -> Callable[..., int]:
    for option in reversed(
        [
            users_option,
            click.option("--auto-approve", is_flag=True, help="Apply without asking (CI)."),
            allow_deletes_option,
            allow_locks_option,
            target_option,
            click.option(
                "--force-unlock", is_flag=True, help="Take over the reconcile lock from a run that is gone."
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_apply_options
@handle_errors
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
@handle_errors
def reconcile(mail_dir: Path | None, no_reload: bool, **options: Any) -> int:
    """Apply users/ to the service, then reflect SMTP users on the mail server.

    \b
    Example:
      reconciler reconcile --auto-approve --mail-dir /etc/reconciler/mail
    """
    return _run_apply(None, mail=MailStep(mail_dir, reload=not no_reload), **options)


@dataclass(frozen=True)
class MailStep:
    mail_dir: Path | None
    reload: bool


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
) -> int:
    """Apply under the lock; for reconcile, the mail step runs under the same lock, after the
    service changes (also when some failed: the gateway then still drops locked and deleted users)."""
    loaded = _load(users_dir)
    settings = loaded.settings
    guards = engine.guards_from(settings, allow_deletes, allow_locks)
    state_dir = users_dir.parent / settings.state_dir
    with (
        reconcile_lock(
            state_dir, settings.api_url, "apply" if mail is None else "reconcile", force=force_unlock
        ),
        ServiceClient.from_settings(settings) as client,
    ):
        code = _apply_to_service(plan_file, loaded, client, guards, targets, auto_approve=auto_approve)
        if mail is None or code not in (ExitCode.OK, ExitCode.ERROR):
            return code
        from reconciler.cli.mail_step import run_mail_step

        return max(code, run_mail_step(users_dir, mail.mail_dir, reload=mail.reload, force=force_unlock))


def _apply_to_service(
    plan_file: Path | None,
    loaded: Loaded,
    client: ServiceClient,
    guards: Guards,
    targets: tuple[str, ...],
    *,
    auto_approve: bool,
) -> int:
    settings = loaded.settings
    resolved = _resolve(loaded, targets, require_all=True)
    fresh = _fresh_plan(loaded, client, resolved, guards, targets)
    if plan_file is not None:
        _check_saved(_read_saved(plan_file), fresh)
    raise_if_unsafe(fresh)
    if not fresh.changes:
        click.echo("No changes to the service.")
        return ExitCode.OK
    material = engine.key_material(fresh, resolved, settings, loaded.desired)
    if plan_file is None and not _confirmed(fresh, auto_approve):
        raise Cancelled("apply cancelled; nothing was changed")
    state_dir = loaded.users_dir.parent / settings.state_dir
    audit = AuditLog(state_dir, _audit_context(loaded, settings))
    outcomes = _execute(fresh, client, material, settings, audit)
    _report(outcomes)
    converged = _converged(loaded, client, resolved, guards, targets)
    return ExitCode.ERROR if failed(outcomes) or not converged else ExitCode.OK


def _check_saved(saved: Plan, fresh: Plan) -> None:
    """A saved plan is applied exactly: refuse when the state moved, or when the same inputs now
    give other changes (the plan was made with other options, such as --target)."""
    engine.check_not_stale(saved, fresh)
    if saved.changes != fresh.changes:
        raise StalePlan(
            "the saved plan does not match what apply would do now (was it made with other options, "
            "such as --target?). Run `reconciler plan --out` again with the options you apply with."
        )


def _read_saved(path: Path) -> Plan:
    try:
        return plan_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReconcilerError(f"{path} is not a saved plan: {type(exc).__name__}: {exc}") from None


def _confirmed(result: Plan, auto_approve: bool) -> bool:
    _show(result, "text")
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise ReconcilerError("refusing to apply without --auto-approve: stdin is not a terminal")
    return click.confirm("Apply these changes?", default=False)


def _audit_context(loaded: Loaded, settings: Settings) -> dict[str, Any]:
    return {"actor": actor(), "commit": git_commit(loaded.users_dir), "service": settings.api_url}


def _execute(
    result: Plan, client: ServiceClient, material: KeyMaterial, settings: Settings, audit: AuditLog
) -> list[Outcome]:
    total = len(result.changes)
    show_bar = sys.stderr.isatty() and total >= 20

    def record(outcome: Outcome) -> None:
        change = outcome.change
        audit.write(
            action=change.action.value,
            api_user=change.api_user,
            fields={f.field: f.new for f in change.fields},
            key_change=change.key_change,
            outcome=outcome.status.value,
            detail=outcome.detail or None,
        )
        if bar is not None:
            bar.update(1)

    bar: Any = None
    with contextlib.ExitStack() as stack:
        if show_bar:
            bar = stack.enter_context(click.progressbar(length=total, label="Applying", file=sys.stderr))
        return apply_plan(
            result,
            client,
            material,
            concurrency=settings.concurrency,
            on_outcome=record,
            self_user=settings.api_user,
        )


def _report(outcomes: list[Outcome]) -> None:
    width = max(len(o.change.api_user) for o in outcomes)
    click.echo("")
    click.echo(f"{'API user'.ljust(width)}  {'action'.ljust(7)}  outcome")
    for o in outcomes:
        status = o.status.value + (f": {o.detail}" if o.detail else "")
        colour = {Status.OK: "green", Status.FAILED: "red", Status.SKIPPED: "yellow"}[o.status]
        click.echo(
            f"{o.change.api_user.ljust(width)}  {o.change.action.value.ljust(7)}  "
            + _styler()(status, colour)
        )
    bad = failed(outcomes)
    click.echo(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} changes applied.")
    if bad:
        click.echo(
            "Some changes did not apply; the others did. Run the same command again to converge.", err=True
        )


def _converged(
    loaded: Loaded, client: ServiceClient, resolved: ResolvedKeys, guards: Guards, targets: tuple[str, ...]
) -> bool:
    """Plan again: a service that silently ignored a change shows up here (and fails the run), not
    in next week's drift report."""
    unguarded = replace(guards, allow_deletes=None, allow_locks=None)
    pending = _fresh_plan(loaded, client, resolved, unguarded, targets, mail=False)
    if not pending.changes:
        return True
    click.echo("Still pending after apply: " + summary_line(pending), err=True)
    for change in pending.changes:
        fields = ", ".join(f.field for f in change.fields) or "api_key"
        click.echo(f"  {change.action.value} {change.api_user}: {fields}", err=True)
    return False


COMMANDS = (plan, apply, reconcile)
