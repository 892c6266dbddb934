"""The pure diff: desired state x live state -> Plan, and the safety guards.

No I/O here. Keys never enter this module: key checks work on keyed fingerprints computed at the
edge, so a plan can be printed, saved and posted on a pull request without leaking anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from reconciler.errors import UnsafePlan
from reconciler.model import COMPARED_FIELDS, LiveUser, Operation, UserSpec

FINGERPRINT_ANNOTATION = "reconciler/key-fingerprint"
KEY_UPDATED_ANNOTATION = "reconciler/key-updated-at"
# `age-sha256:<hex sha-256 of the armored ciphertext>` of the age key last applied (docs/contract.md):
# a plan without the identity can still tell that the encrypted value changed.
KEY_SOURCE_ANNOTATION = "reconciler/key-source"
SENSITIVE = "(sensitive)"


class Action(StrEnum):
    """Kinds of change, in the order they are applied: access is removed last."""

    CREATE = "create"
    UPDATE = "update"
    UNLOCK = "unlock"
    LOCK = "lock"
    DELETE = "delete"


PHASES: tuple[Action, ...] = tuple(Action)


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


# An operation without an authenticated API user was made by the service itself (the embedded
# service creates its first admin at start-up): neither a person nor "the API".
SERVICE_ITSELF = "the service itself"


@dataclass(frozen=True)
class Drift:
    """Who changed a declared field outside the reconciler, from the service's operation log."""

    field: str
    actor: str
    at: datetime

    def describe(self) -> str:
        via = "" if self.actor == SERVICE_ITSELF else " via the API"
        return f"{self.field}: changed by {self.actor}{via} at {self.at.strftime('%Y-%m-%dT%H:%MZ')}"


@dataclass(frozen=True)
class Change:
    """One change to one API user. `fields` hold old -> new for creates and updates. `version` is
    the user's version the plan saw (apply sends it as If-Match); `drift` says who made the live
    values differ. Neither is part of what the change does, so neither takes part in equality."""

    action: Action
    api_user: str
    fields: tuple[FieldChange, ...] = ()
    key_change: bool = False
    key_reason: str | None = None
    version: str | None = field(default=None, compare=False)
    drift: tuple[Drift, ...] = field(default=(), compare=False)

    @property
    def sort_key(self) -> tuple[int, str]:
        return PHASES.index(self.action), self.api_user.lower()

    def new_values(self) -> dict[str, Any]:
        """The changed fields as a nested body for the service (access.smtp -> {"access": {...}})."""
        body: dict[str, Any] = {}
        for change in self.fields:
            _set_path(body, change.field, change.new)
        return body


@dataclass(frozen=True)
class SkippedKey:
    """A key check the plan could not make, and why (the key is not available where it ran)."""

    api_user: str
    reason: str


@dataclass(frozen=True)
class KeyInputs:
    """What the plan compares keys with, computed at the edge; every mapping is keyed by api_user
    lowercased. `fingerprints`: keyed fingerprints of the declared keys that could be read;
    `sources`: the key-source digest of each declared age ciphertext (needs no identity);
    `unavailable`: why the other declared keys could not be read."""

    fingerprints: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Guards:
    """Safety limits; overrides are narrow (a number of deletes or locks), never a global force."""

    max_deletes: int = 3
    max_change_percent: float = 25.0
    allow_deletes: int | None = None
    allow_locks: int | None = None
    self_user: str | None = None


@dataclass(frozen=True)
class Shape:
    """What the backend holds, for the diff: `compared` the paths it stores and can read back,
    `sent` those it stores (None: all); `key_replace` when a new key means a new user."""

    compared: frozenset[str] | None = None
    sent: frozenset[str] | None = None
    key_replace: bool = False


REPLACE_NOTE = " (replace: this backend deletes and re-creates the user to change its key)"


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    desired_digest: str
    live_versions: Mapping[str, str]
    key_checks_skipped: bool = False
    notes: tuple[str, ...] = ()
    mail_files: tuple[str, ...] = ()
    refusals: tuple[str, ...] = field(default=())
    keys_checked: int = 0
    skipped_keys: tuple[SkippedKey, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes and not self.mail_files

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    def key_changes(self) -> int:
        """Keys changed on existing users (every create sets a key too; that is not counted)."""
        return sum(1 for c in self.changes if c.key_change and c.action is Action.UPDATE)

    def by_action(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is action)


# --- the diff ---------------------------------------------------------------------------------


def make_plan(
    desired: Sequence[UserSpec],
    live: Sequence[LiveUser],
    *,
    desired_digest: str,
    fingerprints: Mapping[str, str] | None = None,
    guards: Guards = Guards(),
    targets: Sequence[str] = (),
    keys: KeyInputs | None = None,
    shape: Shape | None = None,
) -> Plan:
    """Diff declared users against live ones. Key checks use `keys` (or, the older form,
    `fingerprints` alone): a user whose declared key is neither readable here nor an age
    ciphertext is listed in `skipped_keys` with the reason, never silently passed. `shape` is what
    the backend stores and can read back (reconciler.supported), and how it changes a key."""
    shape = shape or Shape()
    inputs = keys if keys is not None else KeyInputs(fingerprints=fingerprints or {})
    live_by_name = {u.api_user.lower(): u for u in live}
    desired_by_name = {u.api_user.lower(): u for u in desired}
    changes: list[Change] = []
    checked: list[str] = []
    skipped: list[SkippedKey] = []
    for name, spec in desired_by_name.items():
        current = live_by_name.get(name)
        if current is None:
            changes.append(_create(spec, shape))
            continue
        check = _key_check(current, inputs, name)
        changes.extend(_update(spec, current, check.reason, shape))
        if not targeted(spec.api_user, targets):
            continue
        if check.checked:
            checked.append(name)
        else:
            skipped.append(SkippedKey(current.api_user, inputs.unavailable.get(name, "key not available")))
    gone = [user for name, user in live_by_name.items() if name not in desired_by_name]
    changes.extend(Change(Action.DELETE, user.api_user, version=user.version) for user in gone)
    changes = [c for c in changes if targeted(c.api_user, targets)]
    changes.sort(key=lambda c: c.sort_key)
    plan = Plan(
        changes=tuple(changes),
        desired_digest=desired_digest,
        live_versions=live_versions(live),
        key_checks_skipped=bool(skipped),
        notes=_notes(targets),
        keys_checked=len(checked),
        skipped_keys=tuple(sorted(skipped, key=lambda k: k.api_user.lower())),
    )
    return _with_refusals(plan, desired, live, guards)


def _notes(targets: Sequence[str]) -> tuple[str, ...]:
    if targets:
        return ("Limited to --target " + ", ".join(targets) + "; other users were not compared.",)
    return ()


def targeted(api_user: str, targets: Sequence[str]) -> bool:
    """Whether a --target run is about this user (no targets: everyone); globs, any case."""
    return not targets or any(fnmatchcase(api_user.lower(), t.lower()) for t in targets)


def _create(spec: UserSpec, shape: Shape) -> Change:
    # Unset optional fields (description, smtp_senders) are left to the service's defaults.
    fields = tuple(
        FieldChange(path, None, value)
        for path, value in _attributes(spec).items()
        if value is not None and (shape.sent is None or path in shape.sent)
    )
    return Change(Action.CREATE, spec.api_user, fields, key_change=True, key_reason="new user")


def _update(spec: UserSpec, live: LiveUser, reason: str | None, shape: Shape) -> list[Change]:
    diffs = [
        FieldChange(path, old, new)
        for path in declared_paths(spec)
        if (shape.compared is None or path in shape.compared)
        and (old := _live_value(live, path)) != (new := _spec_value(spec, path))
    ]
    if reason is not None and shape.key_replace:
        reason += REPLACE_NOTE
    diffs += _dependent_changes(live, diffs)
    diffs.sort(key=lambda d: COMPARED_FIELDS.index(d.field))
    lock = next((d for d in diffs if d.field == "locked"), None)
    diffs = [d for d in diffs if d.field != "locked"]
    out: list[Change] = []
    if diffs or reason:
        out.append(
            Change(Action.UPDATE, live.api_user, tuple(diffs), reason is not None, reason, live.version)
        )
    if lock is not None:
        action = Action.LOCK if lock.new else Action.UNLOCK
        out.append(Change(action, live.api_user, (lock,), version=live.version))
    return out


def _dependent_changes(live: LiveUser, diffs: list[FieldChange]) -> list[FieldChange]:
    """Fields the service would otherwise refuse to keep: the merged user must still validate, so
    turning SMTP off clears smtp_senders and turning HTTP-API off clears own_data_only."""
    new = {d.field: d.new for d in diffs}
    extra = []
    if new.get("access.smtp") is False and live.smtp_senders and "smtp_senders" not in new:
        extra.append(FieldChange("smtp_senders", list(live.smtp_senders), None))
    if (
        new.get("access.http_api") is False
        and live.access.own_data_only
        and "access.own_data_only" not in new
    ):
        extra.append(FieldChange("access.own_data_only", True, False))
    return extra


@dataclass(frozen=True)
class KeyCheck:
    reason: str | None  # why the key must be set again; None: it need not
    checked: bool  # False: the declared key could not be compared at all


AGE_CHANGED = "encrypted value changed, checked at apply"
AGE_NOT_RECORDED = "encrypted value not recorded on the service yet, checked at apply"
AGE_REENCRYPTED = "encrypted value changed: the key is set again to record its digest"


def _key_check(live: LiveUser, inputs: KeyInputs, name: str) -> KeyCheck:
    fp, source = inputs.fingerprints.get(name), inputs.sources.get(name)
    reason = key_change_reason(live, fp, fp is None)
    if reason is not None or fp is not None:
        if reason is None and source is not None and live.annotations.get(KEY_SOURCE_ANNOTATION) != source:
            # Same key, new ciphertext (e.g. another recipient): set again so that plans
            # without the identity compare against this ciphertext from now on.
            reason = AGE_REENCRYPTED
        return KeyCheck(reason, checked=True)
    if source is None:
        return KeyCheck(None, checked=False)
    return KeyCheck(_source_reason(live.annotations.get(KEY_SOURCE_ANNOTATION), source), checked=True)


def _source_reason(recorded: str | None, declared: str) -> str | None:
    """Without the identity, the ciphertext's digest is all there is: a new one is reported as a
    key change (exit 2), because the merge's apply may well change or fail on it."""
    if recorded is None:
        return AGE_NOT_RECORDED
    return None if recorded == declared else AGE_CHANGED


def key_change_reason(live: LiveUser, fp: str | None, skipped: bool) -> str | None:
    """Why the key must be set again, or None. Never reads a key back: it compares the keyed
    fingerprint recorded when the reconciler last set the key, and the service's key_updated_at
    with the value recorded then (a key changed in the console moves key_updated_at)."""
    recorded_fp = live.annotations.get(FINGERPRINT_ANNOTATION)
    recorded_at = live.annotations.get(KEY_UPDATED_ANNOTATION)
    if recorded_fp is not None and not _same_time(recorded_at, live.key_updated_at):
        return "changed outside the reconciler"
    if skipped:
        return None
    if recorded_fp is None:
        return "not set by the reconciler yet"
    return _fingerprint_reason(recorded_fp, fp or "")


def _fingerprint_reason(recorded: str, declared: str) -> str | None:
    if recorded == declared:
        return None
    if _secret_id(recorded) is None and recorded == declared.partition(";sid=")[0]:
        return None  # recorded before fingerprints named their secret: same key, same secret
    if _secret_id(recorded) != _secret_id(declared):
        return "fingerprint secret changed: the key is set again to record a new fingerprint"
    return "declared key changed"


def _secret_id(fingerprint: str | None) -> str | None:
    """Fingerprints end in `;sid=<id of the secret>` (engine.fingerprints_of), so a changed secret
    is told apart from a changed key."""
    _, _, sid = (fingerprint or "").partition(";sid=")
    return sid or None


def _same_time(recorded: str | None, actual: datetime | None) -> bool:
    if recorded is None or actual is None:
        return recorded is None and actual is None
    try:
        return datetime.fromisoformat(recorded) == actual
    except ValueError:
        return False


def declared_paths(spec: UserSpec) -> tuple[str, ...]:
    """Only the fields a file declares are compared, so a field left out is never drift."""
    declared = spec.model_fields_set
    paths = []
    for path in COMPARED_FIELDS:
        head, _, tail = path.partition(".")
        if head not in declared:
            continue
        if tail and tail not in spec.access.model_fields_set:
            continue
        paths.append(path)
    return tuple(paths)


def _attributes(spec: UserSpec) -> dict[str, Any]:
    return {path: _spec_value(spec, path) for path in COMPARED_FIELDS}


def _spec_value(spec: UserSpec, path: str) -> Any:
    if path == "smtp_senders":
        return list(spec.smtp_senders) if spec.smtp_senders is not None else None
    return _get_path(spec, path)


def _live_value(live: LiveUser, path: str) -> Any:
    if path == "smtp_senders":
        return list(live.smtp_senders) if live.smtp_senders else None
    return _get_path(live, path)


def _get_path(obj: object, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[leaf] = value


def live_versions(live: Iterable[LiveUser]) -> dict[str, str]:
    """A version per live user, so a saved plan can tell exactly which users moved since."""
    return {
        u.api_user.lower(): hashlib.sha256(
            json.dumps(u.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]
        for u in live
    }


# --- drift attribution ----------------------------------------------------------------------------


def drift_fields(plan: Plan) -> dict[str, set[str]]:
    """api_user (lowercased) -> the live fields a plan would set back: what may have drifted. A key
    changed outside the reconciler counts (as `api_key`); a declared key change does not."""
    wanted: dict[str, set[str]] = {}
    for change in plan.changes:
        if change.action in (Action.CREATE, Action.DELETE):
            continue
        names = {f.field for f in change.fields}
        if change.key_reason == "changed outside the reconciler":
            names.add("api_key")
        if names:
            wanted.setdefault(change.api_user.lower(), set()).update(names)
    return wanted


def attribute_drift(plan: Plan, operations: Iterable[Operation]) -> Plan:
    """Name who made each drifted field differ: the newest logged write of that field, when it was
    not the reconciler's (a field the reconciler wrote last differs because users/ changed, which
    is not drift). `operations` are newest first, as the service answers."""
    wanted = drift_fields(plan)
    last: dict[tuple[str, str], Operation] = {}
    for op in operations:
        for name in op.fields:
            if op.api_user is not None and name in wanted.get(op.api_user.lower(), ()):
                last.setdefault((op.api_user.lower(), name), op)
    changes = tuple(_with_drift(c, last) for c in plan.changes)
    return replace(plan, changes=changes)


def _with_drift(change: Change, last: Mapping[tuple[str, str], Operation]) -> Change:
    names = [f.field for f in change.fields] + (["api_key"] if change.key_change else [])
    found = []
    for name in names:
        op = last.get((change.api_user.lower(), name))
        if op is not None and op.source != "reconciler":
            found.append(Drift(name, op.actor_api_user or SERVICE_ITSELF, op.at))
    return replace(change, drift=tuple(found)) if found else change


# --- safety -------------------------------------------------------------------------------------


def _with_refusals(plan: Plan, desired: Sequence[UserSpec], live: Sequence[LiveUser], guards: Guards) -> Plan:
    reasons = check_safety(plan, desired, live, guards)
    return replace(plan, refusals=tuple(reasons)) if reasons else plan


def check_safety(
    plan: Plan, desired: Sequence[UserSpec], live: Sequence[LiveUser], guards: Guards
) -> list[str]:
    """Every reason the plan is unsafe, checked for the whole plan before the first write."""
    if not desired and live:
        # No override exists for this one, so do not suggest --allow-deletes.
        return [
            f"the users directory declares no users but the service has {len(live)}: "
            "an empty or unreadable users/ never means 'delete everyone'"
        ]
    reasons = _mass_change(plan, len(live), guards)
    reasons += _self_protection(plan, guards)
    reasons += _admins_left(plan, desired, live)
    return reasons


def _mass_change(plan: Plan, live_count: int, guards: Guards) -> list[str]:
    reasons = []
    deletes, locks = plan.count(Action.DELETE), plan.count(Action.LOCK)
    if deletes and not _allowed(deletes, guards.allow_deletes, guards.max_deletes, live_count, guards):
        reasons.append(_too_many("delete", deletes, live_count, guards, "--allow-deletes"))
    if locks and not _allowed(locks, guards.allow_locks, None, live_count, guards):
        reasons.append(_too_many("lock", locks, live_count, guards, "--allow-locks"))
    return reasons


def _allowed(count: int, override: int | None, cap: int | None, live_count: int, guards: Guards) -> bool:
    if override is not None:
        return count <= override
    within_cap = cap is None or count <= cap
    # A single change can never be a mass change, so one delete or lock of three users is fine.
    within_share = count <= 1 or count * 100 <= guards.max_change_percent * max(live_count, 1)
    return within_cap and within_share


def _too_many(verb: str, count: int, live_count: int, guards: Guards, flag: str) -> str:
    share = 100.0 * count / max(live_count, 1)
    limits = f"the limit is {guards.max_change_percent:g}% of live users"
    if verb == "delete":
        limits = f"the limits are {guards.max_deletes} deletes and {guards.max_change_percent:g}%"
    return (
        f"too many {verb}s: {count} of {live_count} live users ({share:.1f}%); {limits}. "
        f"If this is intended, run again with {flag} {count}"
    )


_LOCKOUT_VALUES = frozenset({("role", "normal"), ("access.http_api", False)})


def _self_protection(plan: Plan, guards: Guards) -> list[str]:
    me = (guards.self_user or "").lower()
    if not me:
        return []
    reasons = []
    for change in plan.changes:
        if change.api_user.lower() != me:
            continue
        if change.action in (Action.DELETE, Action.LOCK):
            reasons.append(
                f"refusing to {change.action} {change.api_user}: the reconciler authenticates as this "
                "API user and would lock itself out (change it with another admin's credentials)"
            )
        lost = [f.field for f in change.fields if (f.field, f.new) in _LOCKOUT_VALUES]
        if change.action is Action.UPDATE and lost:
            reasons.append(
                f"refusing to set {', '.join(lost)} on {change.api_user}: the reconciler authenticates as "
                "this API user and would lose the rights it needs"
            )
    return reasons


def _admins_left(plan: Plan, desired: Sequence[UserSpec], live: Sequence[LiveUser]) -> list[str]:
    """After the plan, at least one unlocked admin with HTTP-API access must remain. Each user is
    judged as it will be: its live values with the plan's changes on top (fields a file leaves out
    keep their live values)."""
    changes: dict[str, list[Change]] = {}
    for change in plan.changes:
        changes.setdefault(change.api_user.lower(), []).append(change)
    after = [_usable_admin_after(u, changes.get(u.api_user.lower(), [])) for u in live]
    after += [_usable_admin_spec(u) for u in desired if _created(changes.get(u.api_user.lower(), []))]
    if live and not any(after):
        return ["refusing a plan that leaves no unlocked admin with HTTP-API access on the service"]
    return []


def _created(changes: list[Change]) -> bool:
    return any(c.action is Action.CREATE for c in changes)


def _usable_admin_after(user: LiveUser, changes: list[Change]) -> bool:
    if any(c.action is Action.DELETE for c in changes):
        return False
    values: dict[str, Any] = {
        "role": user.role,
        "locked": user.locked,
        "access.http_api": user.access.http_api,
    }
    for field_change in (f for c in changes for f in c.fields):
        if field_change.field in values:
            values[field_change.field] = field_change.new
    return values["role"] == "admin" and not values["locked"] and bool(values["access.http_api"])


def _usable_admin_spec(spec: UserSpec) -> bool:
    return spec.role == "admin" and not spec.locked and spec.access.http_api


def raise_if_unsafe(plan: Plan) -> None:
    if plan.refusals:
        raise UnsafePlan("the plan was refused as unsafe:\n  - " + "\n  - ".join(plan.refusals))
