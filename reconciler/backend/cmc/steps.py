"""The plan in the console's own words (pure): what a person does in the Customers Mail Cloud
console, as numbered steps with the console's names (the API user guide, cited in docs/cmc.md).

The set of users and what was last verified come from the state store (the console has no list):
a user declared but never verified is an add, a verified user whose declaration changed is an
edit, a key change, a lock or an unlock, and a user verified once whose file is gone is a delete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.model import UserSpec

# Declared paths the probes can see, and those they cannot (reported, never drift).
OBSERVABLE = frozenset({"role", "access.http_api", "access.smtp", "locked"})
NOT_OBSERVABLE = ("timezone", "operation", "access.own_data_only", "description")
CONSOLE_FIELDS = ("role", "operation", "access.http_api", "access.smtp", "access.own_data_only", "timezone")
STATE_ATTRS = "cmc/attributes"  # JSON of the console fields last verified
STATE_KEY = "cmc/key"  # keyed fingerprint of the key last verified
STATE_AT = "cmc/verified_at"
STATE_STEP = "cmc/last_step"  # "<action> <answer> <time>" of the guided session

_LABEL = {
    "role": "Authorization",
    "operation": "Operation Authorization",
    "access.http_api": "Access Authorization: HTTP-API",
    "access.smtp": "Access Authorization: SMTP",
    "access.own_data_only": "Access Authorization: Only refer to this user's sending data",
    "timezone": "Time Zone",
}
OPEN_TAB = "Menu → API settings → API user tab"


class Kind(StrEnum):
    CREATE = "create"
    EDIT = "edit"
    KEY = "change_key"
    UNLOCK = "unlock"
    LOCK = "lock"
    DELETE = "delete"


# A key change comes before the edits and locks of the same user: their verification needs the new key.
ORDER = (Kind.CREATE, Kind.KEY, Kind.EDIT, Kind.UNLOCK, Kind.LOCK, Kind.DELETE)


@dataclass(frozen=True)
class Step:
    """One thing to do in the console: fixed words, and the value (from users/) they apply to."""

    action: str
    value: str | None = None

    def __str__(self) -> str:
        return self.action if self.value is None else f"{self.action}: {self.value}"


@dataclass(frozen=True)
class Task:
    """One change, done by a person in one dialog of the console."""

    number: int
    kind: Kind
    api_user: str
    steps: tuple[Step, ...]
    changes: Mapping[str, Any] = field(default_factory=dict)  # console field path -> new value
    key_source: str | None = None  # where the key to type comes from (never the key)
    drift: tuple[str, ...] = ()  # console operations behind this change, with their author

    @property
    def needs_key(self) -> bool:
        return self.kind in (Kind.CREATE, Kind.KEY)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "action": self.kind.value,
            "api_user": self.api_user,
            "steps": [str(step) for step in self.steps],
            "changes": dict(self.changes),
            "key_source": self.key_source,
            "drift": list(self.drift),
        }


def console_attributes(user: UserSpec) -> dict[str, Any]:
    return {
        "role": user.role,
        "operation": user.operation,
        "access.http_api": user.access.http_api,
        "access.smtp": user.access.smtp,
        "access.own_data_only": user.access.own_data_only,
        "timezone": user.timezone,
    }


def _show(path: str, value: Any) -> str:
    if path == "role":
        return "API group Admin" if value == "admin" else "Normal"
    if isinstance(value, bool):
        return "checked" if value else "unchecked"
    return str(value)


def _field_steps(changes: Mapping[str, Any]) -> list[Step]:
    return [Step(_LABEL[path], _show(path, value)) for path, value in changes.items()]


def _key_step(user: UserSpec) -> Step:
    return Step(
        "API Key and API Key (confirmation): type the key (answer `key` to see it) from",
        user.api_key.describe(),
    )


def _create(user: UserSpec) -> list[Step]:
    return [
        Step(f"{OPEN_TAB}: click add"),
        Step("API User", user.api_user),
        _key_step(user),
        *_field_steps(console_attributes(user)),
        Step("click Save"),
    ]


def _open(api_user: str) -> Step:
    return Step(f"{OPEN_TAB}: click the API user", api_user)


def _edit(api_user: str, changes: Mapping[str, Any]) -> list[Step]:
    return [_open(api_user), *_field_steps(changes), Step("click Save")]


def _key(user: UserSpec) -> list[Step]:
    return [_open(user.api_user), Step("check Change API key"), _key_step(user), Step("click Save")]


def _lock(api_user: str, locked: bool) -> list[Step]:
    box = "check" if locked else "uncheck"
    return [_open(api_user), Step(f"{box} Lock this account"), Step("click Save")]


def _delete(api_user: str) -> list[Step]:
    return [_open(api_user), Step("click Delete"), Step("enter your console password and confirm")]


@dataclass(frozen=True)
class Recorded:
    """What the state store says was last verified for one user."""

    attributes: Mapping[str, Any] | None
    key: str | None
    locked: bool

    @classmethod
    def from_state(cls, entry: Mapping[str, str]) -> Recorded:
        raw = entry.get(STATE_ATTRS)
        attrs = json.loads(raw) if raw else None
        locked = bool(attrs.pop("locked", False)) if isinstance(attrs, dict) else False
        return cls(attrs, entry.get(STATE_KEY), locked)


def record(user: UserSpec, key_fingerprint: str | None, at: str) -> dict[str, str]:
    """The state entry of a user just verified as declared."""
    attrs = {**console_attributes(user), "locked": user.locked}
    entry = {STATE_ATTRS: json.dumps(attrs, sort_keys=True), STATE_AT: at}
    if key_fingerprint is not None:
        entry[STATE_KEY] = key_fingerprint
    return entry


def changes_of(
    user: UserSpec, fingerprint: str | None, recorded: Recorded | None
) -> list[tuple[Kind, dict[str, Any]]]:
    if recorded is None or recorded.attributes is None:
        first: list[tuple[Kind, dict[str, Any]]] = [(Kind.CREATE, {})]
        return first + ([(Kind.LOCK, {})] if user.locked else [])
    wanted = console_attributes(user)
    edits = {p: v for p, v in wanted.items() if recorded.attributes.get(p) != v}
    found: list[tuple[Kind, dict[str, Any]]] = [(Kind.EDIT, edits)] if edits else []
    if fingerprint is not None and fingerprint != recorded.key:
        found.append((Kind.KEY, {}))
    if user.locked != recorded.locked:
        found.append((Kind.LOCK if user.locked else Kind.UNLOCK, {}))
    return found


def tasks(
    users: Sequence[UserSpec],
    fingerprints: Mapping[str, str | None],
    state: Mapping[str, Mapping[str, str]],
    drift: Mapping[str, tuple[str, ...]] = {},
    in_scope: Callable[[str], bool] = lambda name: True,
) -> list[Task]:
    """Every change, in the console's order of safety: adds first, deletes last."""
    found: list[tuple[Kind, str, dict[str, Any], UserSpec | None]] = []
    declared = {u.api_user.lower() for u in users}
    for user in users:
        if in_scope(user.api_user):
            recorded = (
                Recorded.from_state(state[user.api_user.lower()]) if user.api_user.lower() in state else None
            )
            fp = fingerprints.get(user.api_user)
            found += [(kind, user.api_user, ch, user) for kind, ch in changes_of(user, fp, recorded)]
    for name, entry in sorted(state.items()):
        if name not in declared and not name.startswith("#") and in_scope(name) and entry.get(STATE_ATTRS):
            found.append((Kind.DELETE, name, {}, None))
    found.sort(key=lambda item: (ORDER.index(item[0]), item[1].lower()))
    return [
        _task(n, kind, name, ch, user, drift=drift.get(name.lower(), ()))
        for n, (kind, name, ch, user) in enumerate(found, 1)
    ]


def _task(
    number: int,
    kind: Kind,
    name: str,
    changes: dict[str, Any],
    user: UserSpec | None,
    *,
    drift: tuple[str, ...],
) -> Task:
    if kind is Kind.DELETE or user is None:
        return Task(number, kind, name, tuple(_delete(name)), drift=drift)
    source = user.api_key.describe()
    if kind is Kind.CREATE:
        return Task(number, kind, name, tuple(_create(user)), console_attributes(user), source, drift)
    if kind is Kind.EDIT:
        return Task(number, kind, name, tuple(_edit(name, changes)), changes, drift=drift)
    if kind is Kind.KEY:
        return Task(number, kind, name, tuple(_key(user)), key_source=source, drift=drift)
    locked = kind is Kind.LOCK
    return Task(number, kind, name, tuple(_lock(name, locked)), {"locked": locked}, drift=drift)


@dataclass(frozen=True)
class ConsoleOperation:
    """One record of the console's operation log (auditlogs/list, type=operation)."""

    account: str  # the console login that made it
    created: str  # "yyyy-mm-dd hh:mm:ss"
    operation: str
    target: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ConsoleOperation:
        def text(name: str) -> str:
            return str(record.get(name, ""))[:200]

        return cls(text("account"), text("created"), text("operation"), text("target"))

    def describe(self) -> str:
        return f"{self.operation} by {self.account} at {self.created}"


def after_console(entry: Mapping[str, str], operation: str) -> dict[str, str]:
    """What we can still claim about a user after a console operation we did not ask for: the
    part it may have changed is no longer verified, so the plan asks for it again."""
    state = dict(entry)
    raw = state.get(STATE_ATTRS)
    attrs: dict[str, Any] = json.loads(raw) if raw else {}
    if operation == "delete":
        return {}
    if operation == "change_api_key":
        state.pop(STATE_KEY, None)
    elif operation in ("lock", "unlock"):
        attrs["locked"] = operation == "lock"
    elif attrs:
        attrs = {"locked": attrs.get("locked", False)}  # an edit: every field is in doubt
    if raw:
        state[STATE_ATTRS] = json.dumps(attrs, sort_keys=True)
    return state


def interim(user: UserSpec, recorded: Recorded | None, remaining: Sequence[Task]) -> UserSpec:
    """The user as the console should have it once the tasks before `remaining` are done: the
    fields of its remaining tasks still as last verified (a new user: unlocked)."""
    kinds = {t.kind for t in remaining if t.api_user.lower() == user.api_user.lower()}
    update: dict[str, Any] = {}
    if kinds & {Kind.LOCK, Kind.UNLOCK}:
        update["locked"] = recorded.locked if recorded is not None else False
    if Kind.EDIT in kinds and recorded is not None and recorded.attributes:
        old = recorded.attributes
        access = {k.removeprefix("access."): old[k] for k in old if k.startswith("access.")}
        update |= {k: old[k] for k in ("role", "operation", "timezone") if k in old}
        update["access"] = user.access.model_copy(update=access)
    return user.model_copy(update=update) if update else user
