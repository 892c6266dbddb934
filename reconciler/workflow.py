"""The apply and reconcile workflow: load users/, resolve keys, plan, check the plan is safe and
current, apply it under the reconcile lock, plan again to prove convergence, then (reconcile) the
mail step under the mail-directory lock.

The workflow never prints or prompts: it tells a `Reporter` (the CLI implements one) what happened
and asks it for confirmation. That keeps every decision here testable without a terminal, and the
CLI a thin layer of options and presentation.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from reconciler import engine
from reconciler.apply import NOT_STARTED, Hooks, KeyMaterial, Outcome, Status, apply_plan, failed
from reconciler.backend.http.client import ServiceClient
from reconciler.config import Settings, load_settings, service_api_key
from reconciler.desired import DesiredState, load_users
from reconciler.errors import (
    Cancelled,
    ExitCode,
    LeaseLost,
    LockHeld,
    Problem,
    ReconcilerError,
    StalePlan,
    ValidationFailed,
)
from reconciler.gateway import run_recorded
from reconciler.interrupts import Interruptible, interruptible
from reconciler.mail import MailReport, preview, reflect
from reconciler.mail.accepted import MailView, accepted_view
from reconciler.mail.checks import preflight
from reconciler.mail.hashing import Hasher
from reconciler.mail.reflect import mail_dir_from, mail_users
from reconciler.mail.state import read_served
from reconciler.output import plan_from_json
from reconciler.plan import Change, Guards, Plan, attribute_drift, drift_fields, raise_if_unsafe, targeted
from reconciler.secrets import ApiKey, ResolvedKeys
from reconciler.state import (
    LEASE_NAME,
    AuditLog,
    LockInfo,
    RunLock,
    actor,
    git_commit,
    lock_path,
    reconcile_lock,
    run_id,
    run_lock,
)

LOG_WINDOW = 90  # days of the service's operation log a plan looks at to attribute drift
LOG_LIMIT = 1000  # entries of it, at most: one bounded request per plan


class Reporter(Protocol):
    """What the workflow tells the person or pipeline running it. Implemented by the CLI."""

    def warning(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        """Show the plan and, when `ask`, ask the person at the terminal; True to go ahead."""
        ...

    def progress(self, total: int) -> contextlib.AbstractContextManager[Callable[[Outcome], None]]:
        """A callback for each outcome as it completes (a progress bar on a terminal)."""
        ...

    def outcomes(self, outcomes: list[Outcome]) -> None: ...

    def pending(self, plan: Plan) -> None:
        """Changes still pending after apply (the service ignored or undid some)."""
        ...

    def mail(self, report: MailReport | None) -> None:
        """The mail step's result; None when no mail directory is configured."""
        ...


class KeyCache:
    """The run's keys: each declared key is resolved at most once, whoever asks (the plan, the
    check of the reconciler's own key, the mail step). An age decryption is slow, and a key file
    replaced mid-run must not give the service one key and the gateway another."""

    def __init__(self, desired: DesiredState, settings: Settings) -> None:
        self._desired = desired
        self._settings = settings
        self._user_of = {str(path): name.lower() for name, path in desired.files.items()}
        self._keys: dict[str, ApiKey] = {}
        self._seen: set[str] = set()
        self._problems: dict[str, tuple[list[Problem], list[Problem]]] = {}  # name -> missing, unusable

    def resolve(self, names: Iterable[str] | None = None) -> ResolvedKeys:
        """The keys of `names` (any case; None = every declared user). Warnings (loose key file
        modes) come only with the first resolution of a user, so each is reported once."""
        wanted = (
            {u.api_user.lower() for u in self._desired.users} if names is None else {n.lower() for n in names}
        )
        fresh = engine.resolve_keys(self._desired, sorted(wanted - self._seen), settings=self._settings)
        self._remember(fresh)
        self._seen |= wanted
        keys = {name: key for name, key in self._keys.items() if name.lower() in wanted}
        missing = [p for n in sorted(wanted) for p in self._problems.get(n, ([], []))[0]]
        unusable = [p for n in sorted(wanted) for p in self._problems.get(n, ([], []))[1]]
        return ResolvedKeys(MappingProxyType(keys), tuple(missing), fresh.warnings, tuple(unusable))

    def _remember(self, fresh: ResolvedKeys) -> None:
        self._keys.update(fresh.keys)
        for problem in fresh.missing:
            name = self._user_of.get(problem.file, Path(problem.file).stem.lower())
            missing, unusable = self._problems.setdefault(name, ([], []))
            missing.append(problem)
            if problem in fresh.unusable:
                unusable.append(problem)


@dataclass(frozen=True)
class Loaded:
    """One snapshot of the declared state for a whole run: settings and users are read once, and
    each key is resolved once (`keys`)."""

    settings: Settings
    desired: DesiredState
    users_dir: Path
    keys: KeyCache = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", KeyCache(self.desired, self.settings))

    @property
    def state_dir(self) -> Path:
        return self.users_dir.parent / self.settings.state_dir


@dataclass(frozen=True)
class ApplyOptions:
    auto_approve: bool = False
    allow_deletes: int | None = None
    allow_locks: int | None = None
    targets: tuple[str, ...] = ()
    force_unlock: bool = False
    lock_timeout: float = 0.0  # seconds to wait for another run's lease; 0 fails fast
    require_keys: bool = False  # plan: a key apply will need and cannot read here is an error


@dataclass(frozen=True)
class MailStep:
    mail_dir: Path | None
    reload: bool
    # The CLI's progress line for the slow part (hashing keys), on a terminal; None: no progress.
    hashing: Callable[[str], contextlib.AbstractContextManager[Hasher]] | None = None


@dataclass(frozen=True)
class Applied:
    code: int
    not_applied: frozenset[str] = frozenset()  # api_users whose change failed or was skipped


def load(users_dir: Path) -> Loaded:
    engine.refuse_missing_users_dir(users_dir)
    return Loaded(load_settings(users_dir), load_users(users_dir), users_dir)


def resolve(
    loaded: Loaded, targets: tuple[str, ...], reporter: Reporter, *, require_all: bool
) -> ResolvedKeys:
    """The keys of the users in scope, resolved once per run. For plan, absent keys (a fork's pull
    request) only skip key checks, but a key that is there and wrong fails the plan, not only the
    apply after the merge. apply needs every key: otherwise a user's key check would be skipped
    and a rotation silently never applied."""
    resolved = loaded.keys.resolve(engine.targeted_names(loaded.desired, targets))
    for warning in resolved.warnings:
        reporter.warning(str(warning))
    if require_all:
        resolved.raise_if_missing()
    elif resolved.unusable:
        raise ValidationFailed(list(resolved.unusable))
    return resolved


def fresh_plan(
    loaded: Loaded,
    client: ServiceClient,
    resolved: ResolvedKeys,
    guards: Guards,
    targets: tuple[str, ...],
    *,
    mail: bool = True,
    reporter: Reporter | None = None,
) -> Plan:
    live = client.list_users()
    plan = engine.compute_plan(
        loaded.desired, live, resolved, settings=loaded.settings, guards=guards, targets=targets
    )
    unmatched = engine.unmatched_targets(loaded.desired, live, targets)
    if unmatched:
        for warning in unmatched:
            if reporter is not None:
                reporter.warning(warning)
        plan = replace(plan, notes=(*plan.notes, *unmatched))
    return with_mail_preview(plan, loaded) if mail else plan


def with_mail_preview(plan: Plan, loaded: Loaded) -> Plan:
    try:
        files = mail_preview(loaded)
    except ReconcilerError as exc:
        return replace(plan, notes=(*plan.notes, f"Mail files were not compared: {exc}"))
    return replace(plan, mail_files=files) if files else plan


def plan_exit(plan: Plan) -> int:
    if plan.refusals:
        return ExitCode.UNSAFE
    return ExitCode.CHANGES_PENDING if not plan.empty else ExitCode.OK


def make_plan(loaded: Loaded, options: ApplyOptions, reporter: Reporter) -> Plan:
    """`plan`: read-only; absent keys skip their checks."""
    guards = engine.guards_from(loaded.settings, options.allow_deletes, options.allow_locks)
    resolved = resolve(loaded, options.targets, reporter, require_all=options.require_keys)
    warnings = engine.key_warnings(loaded.desired, resolved)
    for _, warning in warnings:
        reporter.warning(warning)
    with ServiceClient.from_settings(loaded.settings) as client:
        _settle_rotated_key(loaded, client, reporter)
        plan = with_drift_attribution(
            fresh_plan(loaded, client, resolved, guards, options.targets, reporter=reporter), client
        )
        _settle_if_no_run(loaded, client, plan, options.targets, reporter)
    # Keys the plan did not list as skipped checks (a create has no key to compare) are notes, so
    # every format says what apply will need.
    skipped = {k.api_user.lower() for k in plan.skipped_keys}
    notes = tuple(w for name, w in warnings if name not in skipped)
    return replace(plan, notes=(*plan.notes, *notes)) if notes else plan


def _settle_if_no_run(
    loaded: Loaded, client: ServiceClient, plan: Plan, targets: tuple[str, ...], reporter: Reporter
) -> None:
    """`plan` settles the intents a dead run left, but only when no run is going on: a running
    apply's intents without outcome are changes in flight, not orphans."""
    audit = AuditLog(loaded.state_dir, _audit_context(loaded))
    if not audit.path.exists() or not audit.read().unsettled():
        return
    try:
        running = client.get_lease(LEASE_NAME) is not None
    except ReconcilerError:
        return
    if running or lock_path(loaded.state_dir, loaded.settings.api_url).exists():
        return
    settle_intents(audit, plan, targets, reporter, quiet=True)


def with_drift_attribution(plan: Plan, client: ServiceClient) -> Plan:
    """Who made the live values differ, from the service's operation log: one bounded request per
    plan (the last LOG_WINDOW days, at most LOG_LIMIT entries), none when nothing drifted."""
    wanted = drift_fields(plan)
    if not wanted:
        return plan
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(days=LOG_WINDOW)
    only = next(iter(wanted)) if len(wanted) == 1 else None
    try:
        operations = client.operations(since=since, api_user=only, limit=LOG_LIMIT)
    except ReconcilerError as exc:
        return replace(plan, notes=(*plan.notes, f"Drift was not attributed: {exc}"))
    return plan if operations is None else attribute_drift(plan, operations)


def _settle_rotated_key(loaded: Loaded, client: ServiceClient, reporter: Reporter) -> None:
    """An earlier run changed the reconciler's own key and lost the answer: the configured key is
    refused, but the one users/ declares for the reconciler's user works. Say so, and use it."""
    me = (loaded.settings.api_user or "").lower()
    if not any(u.api_user.lower() == me for u in loaded.desired.users):
        return
    try:
        declared = loaded.keys.resolve([me]).keys
    except ReconcilerError:
        return  # the run's own key resolution reports it
    key = next((k for name, k in declared.items() if name.lower() == me), None)
    configured = service_api_key(loaded.settings)
    if key is None or configured is None or key.reveal() == configured.get_secret_value():
        return
    if client.settle_rotated_key(key):
        reporter.warning(
            f"the configured key of {loaded.settings.api_user} (RECONCILER_API_KEY) is refused, but the key "
            "its file in users/ declares is accepted: an earlier run rotated it. Continuing with the "
            "declared key; put it in RECONCILER_API_KEY (docs/runbook.md)."
        )


def run_apply(
    loaded: Loaded,
    options: ApplyOptions,
    reporter: Reporter,
    *,
    plan_file: Path | None = None,
    mail: MailStep | None = None,
) -> int:
    """Apply under the lock; for reconcile, the mail step runs under the same lock, after the
    service changes (also when some failed: the gateway then still drops locked and deleted users)."""
    settings = loaded.settings
    command = "apply" if mail is None else "reconcile"
    check_before_writing(loaded, mail)
    # The handlers are installed before the lock or lease is taken, so a signal at any point
    # unwinds through its release (a SIGTERM with the default handler left the lock behind).
    with interruptible() as signals, ServiceClient.from_settings(settings) as client:
        client.set_run_headers(actor(), git_commit(loaded.users_dir), run_id())
        _settle_rotated_key(loaded, client, reporter)
        with run_lock(
            client,
            loaded.state_dir,
            settings.api_url,
            command,
            force=options.force_unlock,
            wait=options.lock_timeout,
            ttl=settings.lease_ttl,
        ) as held:
            _report_lock(held, reporter)
            applied = apply_to_service(
                loaded, client, options, reporter, plan_file=plan_file, signals=signals
            )
            _raise_if_lease_lost(client)
            code = applied.code
            if mail is None or code not in (ExitCode.OK, ExitCode.ERROR):
                return code
            # The mail step swaps files and reloads daemons: a signal waits until it is done.
            with signals.draining("the mail step was finishing"):
                step = run_mail_step(
                    loaded, mail, reporter, force=options.force_unlock, not_applied=applied.not_applied
                )
            signals.raise_if_stopped("the service changes and the mail step were completed")
            return max(code, step)


def check_before_writing(loaded: Loaded, mail: MailStep | None) -> None:
    """What would otherwise fail only after the service changed, checked before the first write:
    the state directory (every change is logged there), and for reconcile what the mail step
    needs (directory, group, commands, config) and the keys of the users with mail lines."""
    AuditLog(loaded.state_dir, {}).check()
    settings = loaded.settings
    if mail is None or (mail.mail_dir is None and settings.mail_dir is None):
        return
    preflight(settings, mail_dir_from(settings, mail.mail_dir), reload=mail.reload)
    mail_keys(loaded)  # every key the mail files need and cannot have, at once


def _report_lock(held: RunLock, reporter: Reporter) -> None:
    for warning in held.warnings:
        reporter.warning(warning)
    if held.broken is not None:
        reporter.warning(f"--force-unlock broke {held.description}, held by {held.broken}")


def _raise_if_lease_lost(client: ServiceClient) -> None:
    if client.lease_lost is not None:
        raise LeaseLost(
            f"the run lost its lease on the service ({client.lease_lost}); no write started after "
            "that. Check `reconciler status` and `reconciler history`, then run again to converge."
        )


def apply_to_service(
    loaded: Loaded,
    client: ServiceClient,
    options: ApplyOptions,
    reporter: Reporter,
    *,
    plan_file: Path | None = None,
    signals: Interruptible | None = None,
) -> Applied:
    settings = loaded.settings
    signals = signals or Interruptible()
    guards = engine.guards_from(settings, options.allow_deletes, options.allow_locks)
    resolved = resolve(loaded, options.targets, reporter, require_all=True)
    fresh = fresh_plan(loaded, client, resolved, guards, options.targets, reporter=reporter)
    audit = AuditLog(loaded.state_dir, _audit_context(loaded))
    settle_intents(audit, fresh, options.targets, reporter)
    if plan_file is not None:
        saved = read_saved(plan_file)
        check_saved(saved, fresh)
        fresh = _with_saved_versions(saved, fresh)
    raise_if_unsafe(fresh)
    if not fresh.changes:
        reporter.info("No changes to the service.")
        return Applied(ExitCode.OK)
    material = engine.key_material(fresh, resolved, settings, loaded.desired)
    if plan_file is None:
        fresh = with_drift_attribution(fresh, client)
    # A saved plan was reviewed when it was made; otherwise the person (or --auto-approve) says yes.
    if plan_file is None and not reporter.confirm(fresh, ask=not options.auto_approve):
        raise Cancelled("apply cancelled; nothing was changed")
    with signals.draining("changes already sent were finishing"):
        outcomes = execute(
            fresh, client, material, settings=settings, audit=audit, reporter=reporter, stop=signals.stop
        )
    reporter.outcomes(outcomes)
    signals.raise_if_stopped(_what_was_done(outcomes, len(fresh.changes)))
    pending = _converged(loaded, client, resolved, guards, options.targets, reporter=reporter)
    # A change the service refused, skipped, or silently ignored: the mail step keeps what the
    # gateway served for these users.
    not_applied = frozenset(o.change.api_user for o in failed(outcomes)) | pending
    return Applied(ExitCode.ERROR if not_applied else ExitCode.OK, not_applied)


def check_saved(saved: Plan, fresh: Plan) -> None:
    """A saved plan is applied exactly: refuse when the state moved, or when the same inputs now
    give other changes (the plan was made with other options, such as --target)."""
    engine.check_not_stale(saved, fresh)
    if saved.changes != fresh.changes:
        raise StalePlan(
            "the saved plan does not match what apply would do now (was it made with other options, "
            "such as --target?). Run `reconciler plan --out` again with the options you apply with."
        )


def _with_saved_versions(saved: Plan, fresh: Plan) -> Plan:
    """Writes carry the versions the saved plan saw (check_saved made sure the changes agree)."""
    pairs = zip(saved.changes, fresh.changes, strict=True)
    return replace(fresh, changes=tuple(replace(f, version=s.version or f.version) for s, f in pairs))


def read_saved(path: Path) -> Plan:
    try:
        return plan_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReconcilerError(f"{path} is not a saved plan: {type(exc).__name__}: {exc}") from None


def _audit_context(loaded: Loaded) -> dict[str, Any]:
    return {"actor": actor(), "commit": git_commit(loaded.users_dir), "service": loaded.settings.api_url}


def execute(
    plan: Plan,
    client: ServiceClient,
    material: KeyMaterial,
    *,
    settings: Settings,
    audit: AuditLog,
    reporter: Reporter,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Apply the plan, writing the audit log ahead: an intent before each change is sent, its
    outcome (and the reporter's progress) as soon as it completes."""
    with reporter.progress(len(plan.changes)) as advance:

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
        return apply_plan(
            plan, client, material, concurrency=settings.concurrency, self_user=settings.api_user, hooks=hooks
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


def settle_intents(
    audit: AuditLog, plan: Plan, targets: tuple[str, ...], reporter: Reporter, *, quiet: bool = False
) -> None:
    """Intents left without an outcome by a run that died get one from this fresh plan: a change
    the plan no longer wants is in effect. Never fails the run: the log is a record, not a gate."""
    pending = {(c.api_user.lower(), c.action.value) for c in plan.changes}
    try:
        settled = audit.settle(pending, lambda name: targeted(name, targets))
    except OSError as exc:
        reporter.warning(f"could not settle unknown outcomes in {audit.path}: {exc.strerror}")
        return
    if settled and not quiet:  # `plan` keeps its stdout for the plan (JSON, Markdown)
        reporter.info(f"Settled {settled} change(s) of an interrupted run in {audit.path}.")


def _converged(
    loaded: Loaded,
    client: ServiceClient,
    resolved: ResolvedKeys,
    guards: Guards,
    targets: tuple[str, ...],
    *,
    reporter: Reporter,
) -> frozenset[str]:
    """Plan again: a service that silently ignored a change shows up here (and fails the run), not
    in next week's drift report. The api_users still pending; empty when converged."""
    unguarded = replace(guards, allow_deletes=None, allow_locks=None)
    pending = fresh_plan(loaded, client, resolved, unguarded, targets, mail=False)
    if not pending.changes:
        return frozenset()
    reporter.pending(pending)
    return frozenset(c.api_user for c in pending.changes)


# --- the mail step -------------------------------------------------------------------------------


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


def mail_preview(loaded: Loaded) -> tuple[str, ...]:
    """Mail files that `reconcile` would rewrite; empty when no mail directory is configured or the
    keys are not available here (a pull request from a fork cannot render sasl_passwd)."""
    if loaded.settings.mail_dir is None:
        return ()
    try:
        keys = mail_keys(loaded)
    except ValidationFailed:
        return ()
    return preview(loaded.desired.users, keys, loaded.settings)


def mail_keys(loaded: Loaded) -> Mapping[str, ApiKey]:
    """The keys the mail files need, from the run's snapshot: every unresolvable one at once."""
    resolved = loaded.keys.resolve(mail_users(loaded.desired))
    resolved.raise_if_missing()
    return resolved.keys


def run_mail_step(
    loaded: Loaded,
    mail: MailStep,
    reporter: Reporter,
    *,
    force: bool = False,
    not_applied: frozenset[str] = frozenset(),
) -> int:
    """The mail step of `reconcile`, called under the service lock; takes the mail-directory lock
    too, so a `render` (say, from cron) on the same directory waits its turn (fails fast). It
    renders from the same snapshot of users/ that was just applied, never a re-read, except for
    the users in `not_applied`: the service refused their change, so they keep what the gateway
    served before (reconciler.mail.accepted)."""
    settings = loaded.settings
    if mail.mail_dir is None and settings.mail_dir is None:
        reporter.mail(None)
        return ExitCode.OK
    target = mail_dir_from(settings, mail.mail_dir)
    with mail_lock(loaded.users_dir, settings, target, "reconcile", force=force):
        served = read_served(target) if not_applied else {}  # only needed when something failed
        view = accepted_view(loaded.desired.users, mail_keys(loaded), not_applied, served)
        _report_view(view, reporter)
        hashing = mail.hashing(settings.hash_scheme) if mail.hashing else contextlib.nullcontext(None)
        with hashing as hasher:
            report = run_recorded(
                lambda: reflect(
                    view.users,
                    view.keys,
                    settings,
                    reload=mail.reload,
                    check=False,
                    mail_dir=target,
                    hasher=hasher,
                ),
                desired=loaded.desired,
                users_dir=loaded.users_dir,
                settings=settings,
                mail_dir=target,
                warn=reporter.warning,
            )
    reporter.mail(report)
    return ExitCode.OK


def _report_view(view: MailView, reporter: Reporter) -> None:
    if view.kept:
        reporter.warning(
            "the service did not accept the change of "
            + ", ".join(view.kept)
            + ": the gateway keeps serving what it served before"
        )
    if view.left_out:
        reporter.warning(
            "the service did not accept the change of "
            + ", ".join(view.left_out)
            + ": no mail lines (this gateway did not serve them before)"
        )
