"""The `plan` workflow, and the plan every other workflow makes: the live users from the backend,
the declared ones from the run's snapshot, keys compared by fingerprint, drift attributed from
the backend's operation log when it keeps one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from reconciler.backend.base import Backend
from reconciler.backend.registry import declared_problems
from reconciler.backend.stateful import without_recorded_state
from reconciler.capabilities import ALL_FIELDS, Capabilities, KeyUpdate
from reconciler.config import Settings
from reconciler.desired import DesiredState
from reconciler.errors import ExitCode, ReconcilerError, ValidationFailed
from reconciler.model import LiveUser
from reconciler.plan import Guards, Plan, Shape, attribute_drift, drift_fields, make_plan, targeted
from reconciler.secrets import ResolvedKeys
from reconciler.supported import Fit, fit
from reconciler.workflows import keys as keyring
from reconciler.workflows import mailstep, settle
from reconciler.workflows.context import Run

LOG_WINDOW = 90  # days of the service's operation log a plan looks at to attribute drift
LOG_LIMIT = 1000  # entries of it, at most: one bounded request per plan


@dataclass(frozen=True)
class PlanOptions:
    allow_deletes: int | None = None
    allow_locks: int | None = None
    targets: tuple[str, ...] = ()
    require_keys: bool = False  # a key apply will need and cannot read here is an error


def plan(run: Run, options: PlanOptions) -> Plan:
    """`plan`: read-only; absent keys skip their checks, each named with what apply will need."""
    guards = guards_from(run.settings, options.allow_deletes, options.allow_locks)
    resolved = resolve(run, options.targets, require_all=options.require_keys)
    warnings = keyring.key_warnings(run.desired, resolved)
    for _, warning in warnings:
        run.reporter.warning(warning)
    settle.settle_rotated_key(run)
    made = with_drift_attribution(fresh_plan(run, resolved, guards, options.targets), run.backend)
    settle.settle_if_no_run(run, made, options.targets)
    # Keys the plan did not list as skipped checks (a create has no key to compare) are notes, so
    # every format says what apply will need.
    skipped = {k.api_user.lower() for k in made.skipped_keys}
    notes = tuple(w for name, w in warnings if name not in skipped)
    return replace(made, notes=(*made.notes, *notes)) if notes else made


def plan_exit(made: Plan) -> int:
    if made.refusals:
        return ExitCode.UNSAFE
    return ExitCode.CHANGES_PENDING if not made.empty else ExitCode.OK


def resolve(run: Run, targets: tuple[str, ...], *, require_all: bool) -> ResolvedKeys:
    """The keys of the users in scope, resolved once per run. For plan, absent keys (a fork's pull
    request) only skip key checks, but a key that is there and wrong fails the plan, not only the
    apply after the merge. apply needs every key: otherwise a user's key check would be skipped
    and a rotation silently never applied."""
    resolved = run.keys.resolve(keyring.targeted_names(run.desired, targets))
    for warning in resolved.warnings:
        run.reporter.warning(str(warning))
    if require_all:
        resolved.raise_if_missing()
    elif resolved.unusable:
        raise ValidationFailed(list(resolved.unusable))
    return resolved


def fresh_plan(
    run: Run,
    resolved: ResolvedKeys,
    guards: Guards,
    targets: tuple[str, ...],
    *,
    mail: bool = True,
    warn: bool = True,
) -> Plan:
    backend = run.backend
    live = observe(run)
    made = compute_plan(
        run.desired, live, resolved, settings=run.settings, guards=guards, targets=targets, backend=backend
    )
    unmatched = unmatched_targets(run.desired, live, targets)
    if unmatched:
        for warning in unmatched if warn else ():
            run.reporter.warning(warning)
        made = replace(made, notes=(*made.notes, *unmatched))
    return with_mail_preview(made, run) if mail else made


def unmatched_targets(desired: DesiredState, live: list[LiveUser], targets: tuple[str, ...]) -> list[str]:
    """A note per --target pattern that matches no API user in users/ nor on the service: a typo
    there would otherwise read as "no changes"."""
    names = [u.api_user for u in desired.users] + [u.api_user for u in live]
    return [
        f"--target {pattern!r} matches no API user in users/ or on the service"
        for pattern in targets
        if not any(targeted(name, (pattern,)) for name in names)
    ]


def observe(run: Run) -> list[LiveUser]:
    """The live users. A backend that cannot list them (`can_list: false`, a console) is asked
    for each name from elsewhere: the run's `live_names` hook when one is set, else the declared
    users and those the state store remembers."""
    backend = run.backend
    if backend.capabilities.can_list:
        return backend.users.list()
    names = run.live_names(run) if run.live_names is not None else _known_names(run)
    found = (backend.users.get(name) for name in sorted(set(names), key=str.lower))
    return [user for user in found if user is not None]


def _known_names(run: Run) -> list[str]:
    declared = [u.api_user for u in run.desired.users]
    remembered = list(run.store.read().users) if run.store is not None else []
    return declared + [n for n in remembered if n.lower() not in {d.lower() for d in declared}]


def with_mail_preview(made: Plan, run: Run) -> Plan:
    try:
        files = mailstep.mail_preview(run)
    except ReconcilerError as exc:
        return replace(made, notes=(*made.notes, f"Mail files were not compared: {exc}"))
    return replace(made, mail_files=files) if files else made


def with_drift_attribution(made: Plan, backend: Backend) -> Plan:
    """Who made the live values differ, from the backend's operation log: one bounded request per
    plan (the last LOG_WINDOW days, at most LOG_LIMIT entries), none when nothing drifted or the
    backend keeps no log."""
    wanted = drift_fields(made)
    if not wanted:
        return made
    try:
        log = backend.operation_log
        if log is None:
            return made
        since = datetime.now(UTC).replace(microsecond=0) - timedelta(days=LOG_WINDOW)
        only = next(iter(wanted)) if len(wanted) == 1 else None
        operations = log.operations(since=since, api_user=only, limit=LOG_LIMIT)
    except ReconcilerError as exc:
        return replace(made, notes=(*made.notes, f"Drift was not attributed: {exc}"))
    return attribute_drift(made, operations)


def guards_from(
    settings: Settings, allow_deletes: int | None = None, allow_locks: int | None = None
) -> Guards:
    return Guards(
        max_deletes=settings.max_deletes,
        max_change_percent=settings.max_change_percent,
        allow_deletes=allow_deletes,
        allow_locks=allow_locks,
        self_user=settings.api_user,
    )


def compute_plan(
    desired: DesiredState,
    live: list[LiveUser],
    resolved: ResolvedKeys,
    *,
    settings: Settings,
    guards: Guards,
    targets: tuple[str, ...] = (),
    backend: Backend | None = None,
) -> Plan:
    """The plan; key checks are skipped (and listed) for users whose keys are not available here.
    With `backend`, what it cannot hold is refused or noted (reconciler.supported), and a state
    store that holds no state yet skips the key checks it cannot make (backend.stateful), and what
    the configured backend's factory refuses in users/ is refused too (file:line, exit 3)."""
    secret = keyring.key_fingerprint_secret(settings) if resolved.keys else None
    inputs = keyring.key_inputs(desired, resolved, secret)
    capabilities = backend.capabilities if backend is not None else None
    fits = Fit()
    if backend is not None and capabilities is not None:
        fits = fit(desired, capabilities, backend.name, unsupported=settings.unsupported_fields)
        refused = tuple(str(problem) for problem in declared_problems(desired, settings))
        fits = replace(fits, refusals=(*fits.refusals, *refused))
        inputs = without_recorded_state(inputs, backend, live)
        guards = replace(guards, roles="role" in capabilities.fields)
    shape = _shape(capabilities, fits)
    made = make_plan(
        desired.users,
        live,
        desired_digest=desired.digest,
        guards=guards,
        targets=targets,
        keys=inputs,
        shape=shape,
    )
    if not (fits.refusals or fits.notes):
        return made
    return replace(made, refusals=(*made.refusals, *fits.refusals), notes=(*made.notes, *fits.notes))


def _shape(capabilities: Capabilities | None, fits: Fit) -> Shape | None:
    """None (compare and send everything, as always) unless the backend holds less than all."""
    if capabilities is None:
        return None
    narrowed = capabilities.fields != ALL_FIELDS or capabilities.observable is not None
    replaces = capabilities.key_update is KeyUpdate.REPLACE
    return Shape(fits.compared, fits.sent, replaces) if narrowed or replaces else None
