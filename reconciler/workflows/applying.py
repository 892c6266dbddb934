"""The `apply` and `reconcile` workflows: the run's keys, a fresh plan, settle what a dead run
left, check the plan is safe and current, apply it under the backend's lease (or the local lock),
plan again to prove convergence, then (reconcile) the mail step under the mail-directory lock.

The path of one apply: `run_apply` takes the lease (reconciler.run.lease) -> `apply_to_service`
plans (workflows.planning) and checks a saved plan (workflows.saved) -> `execute` writes the
audit intent (reconciler.run.audit) and hands each change to reconciler.executor, which calls
`backend.users` -> `_converged` plans again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.backend.base import Backend
from reconciler.backend.stateful import StatefulBackend
from reconciler.errors import Cancelled, ExitCode, LeaseLost
from reconciler.executor import NOT_STARTED, Hooks, KeyMaterial, Outcome, Status, apply_plan, failed
from reconciler.interrupts import Interruptible, interruptible
from reconciler.mail.checks import preflight
from reconciler.mail.reflect import mail_dir_from
from reconciler.plan import Change, Guards, Plan, raise_if_unsafe
from reconciler.run.audit import AuditLog
from reconciler.run.lease import RunLock, run_lock
from reconciler.secrets import ResolvedKeys
from reconciler.workflows import keys as keyring
from reconciler.workflows import saved as saved_plans
from reconciler.workflows.context import Reporter, Run
from reconciler.workflows.mailstep import MailStep, mail_keys, run_mail_step
from reconciler.workflows.planning import fresh_plan, guards_from, resolve, with_drift_attribution
from reconciler.workflows.settle import audit_log, settle_intents, settle_rotated_key


@dataclass(frozen=True)
class ApplyOptions:
    auto_approve: bool = False
    allow_deletes: int | None = None
    allow_locks: int | None = None
    targets: tuple[str, ...] = ()
    force_unlock: bool = False
    lock_timeout: float = 0.0  # seconds to wait for another run's lease; 0 fails fast


@dataclass(frozen=True)
class Applied:
    code: int
    not_applied: frozenset[str] = frozenset()  # api_users whose change failed or was skipped


def run_apply(
    run: Run, options: ApplyOptions, *, plan_file: Path | None = None, mail: MailStep | None = None
) -> int:
    """Apply under the lock; for reconcile, the mail step runs under the same lock, after the
    service changes (also when some failed: the gateway then still drops locked and deleted users)."""
    settings = run.settings
    command = "apply" if mail is None else "reconcile"
    check_before_writing(run, mail)
    # The handlers are installed before the lock or lease is taken, so a signal at any point
    # unwinds through its release (a SIGTERM with the default handler left the lock behind).
    with interruptible() as signals:
        backend = run.identified_backend()
        settle_rotated_key(run)
        with run_lock(
            backend,
            run.state_dir,
            settings.api_url,
            command,
            force=options.force_unlock,
            wait=options.lock_timeout,
            ttl=settings.lease_ttl,
        ) as held:
            _report_lock(held, run.reporter)
            try:
                applied = apply_to_service(run, options, plan_file=plan_file, signals=signals)
            finally:
                if isinstance(backend, StatefulBackend):
                    backend.flush()  # under the lease: what this run recorded, before the next run reads it
            _raise_if_lease_lost(backend)
            code = applied.code
            if mail is None or code not in (ExitCode.OK, ExitCode.ERROR):
                return code
            # The mail step swaps files and reloads daemons: a signal waits until it is done.
            with signals.draining("the mail step was finishing"):
                step = run_mail_step(run, mail, force=options.force_unlock, not_applied=applied.not_applied)
            signals.raise_if_stopped("the service changes and the mail step were completed")
            return max(code, step)


def check_before_writing(run: Run, mail: MailStep | None) -> None:
    """What would otherwise fail only after the service changed, checked before the first write:
    the state directory (every change is logged there), and for reconcile what the mail step
    needs (directory, group, commands, config) and the keys of the users with mail lines."""
    AuditLog(run.state_dir, {}).check()
    settings = run.settings
    if mail is None or (mail.mail_dir is None and settings.mail_dir is None):
        return
    preflight(settings, mail_dir_from(settings, mail.mail_dir), reload=mail.reload)
    mail_keys(run)  # every key the mail files need and cannot have, at once


def _report_lock(held: RunLock, reporter: Reporter) -> None:
    for warning in held.warnings:
        reporter.warning(warning)
    if held.broken is not None:
        reporter.warning(f"--force-unlock broke {held.description}, held by {held.broken}")


def _raise_if_lease_lost(backend: Backend) -> None:
    if backend.lease_lost is not None:
        raise LeaseLost(
            f"the run lost its lease on the service ({backend.lease_lost}); no write started after "
            "that. Check `reconciler status` and `reconciler history`, then run again to converge."
        )


def apply_to_service(
    run: Run, options: ApplyOptions, *, plan_file: Path | None = None, signals: Interruptible | None = None
) -> Applied:
    reporter = run.reporter
    signals = signals or Interruptible()
    guards = guards_from(run.settings, options.allow_deletes, options.allow_locks)
    resolved = resolve(run, options.targets, require_all=True)
    fresh = fresh_plan(run, resolved, guards, options.targets)
    audit = audit_log(run)
    settle_intents(audit, fresh, options.targets, reporter)
    if plan_file is not None:
        saved = saved_plans.load_saved_plan(plan_file)
        saved_plans.check_saved(saved, fresh)
        fresh = saved_plans.with_saved_versions(saved, fresh)
    raise_if_unsafe(fresh)
    if not fresh.changes:
        reporter.info("No changes to the service.")
        return Applied(ExitCode.OK)
    material = keyring.key_material(fresh, resolved, run.settings, run.desired)
    if plan_file is None:
        fresh = with_drift_attribution(fresh, run.backend)
    # A saved plan was reviewed when it was made; otherwise the person (or --auto-approve) says yes.
    if plan_file is None and not reporter.confirm(fresh, ask=not options.auto_approve):
        raise Cancelled("apply cancelled; nothing was changed")
    with signals.draining("changes already sent were finishing"):
        outcomes = execute(run, fresh, material, audit=audit, stop=signals.stop)
    reporter.outcomes(outcomes)
    signals.raise_if_stopped(_what_was_done(outcomes, len(fresh.changes)))
    pending = _converged(run, resolved, guards, options.targets)
    # A change the service refused, skipped, or silently ignored: the mail step keeps what the
    # gateway served for these users.
    not_applied = frozenset(o.change.api_user for o in failed(outcomes)) | pending
    return Applied(ExitCode.ERROR if not_applied else ExitCode.OK, not_applied)


def execute(
    run: Run, made: Plan, material: KeyMaterial, *, audit: AuditLog, stop: threading.Event | None = None
) -> list[Outcome]:
    """Apply the plan, writing the audit log ahead: an intent before each change is sent, its
    outcome (and the reporter's progress) as soon as it completes."""
    with run.reporter.progress(len(made.changes)) as advance:

        def started(change: Change) -> str:
            return audit.intent(**_audit_fields(change))

        def record(outcome: Outcome) -> None:
            audit.outcome(
                outcome.intent,
                **_audit_fields(outcome.change),
                outcome=outcome.status.value,
                detail=outcome.detail or None,
            )
            advance(outcome)

        hooks = Hooks(on_start=started, on_outcome=record, stop=stop or threading.Event())
        settings = run.settings
        return apply_plan(
            made,
            run.backend,
            material,
            concurrency=settings.concurrency,
            self_user=settings.api_user,
            hooks=hooks,
        )


def _audit_fields(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "api_user": change.api_user,
        "fields": {f.field: f.new for f in change.fields},
        "key_change": change.key_change,
    }


def _what_was_done(outcomes: list[Outcome], planned: int) -> str:
    done = sum(1 for o in outcomes if o.status is Status.OK)
    not_started = sum(1 for o in outcomes if o.detail == NOT_STARTED)
    unknown = planned - len(outcomes)
    text = f"{done} of {planned} changes applied, {not_started} not started"
    if unknown:
        text += f", {unknown} still in flight (outcome unknown: `reconciler status` lists them)"
    return text + ". Run the same command again to converge."


def _converged(run: Run, resolved: ResolvedKeys, guards: Guards, targets: tuple[str, ...]) -> frozenset[str]:
    """Plan again: a service that silently ignored a change shows up here (and fails the run), not
    in next week's drift report. The api_users still pending; empty when converged."""
    unguarded = replace(guards, allow_deletes=None, allow_locks=None)
    pending = fresh_plan(run, resolved, unguarded, targets, mail=False, warn=False)
    if not pending.changes:
        return frozenset()
    run.reporter.pending(pending)
    return frozenset(c.api_user for c in pending.changes)
