"""The kit's side of a case: declared users, the plan of the pure core against a backend's list,
and a change applied through the seam with the writes the reconciler makes (reconciler's apply:
create with the key's fingerprint, then record the service's key time; If-Match everywhere)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.backend.base import Backend
from reconciler.model import LiveUser, UserSpec
from reconciler.plan import (
    FINGERPRINT_ANNOTATION,
    KEY_UPDATED_ANNOTATION,
    Action,
    Change,
    KeyInputs,
    Plan,
    make_plan,
)
from reconciler.secrets import ApiKey, fingerprint

SECRET = b"conformance kit fingerprint secret"
DOMAIN = "kit.example.com"


def new_key() -> ApiKey:
    """A fresh key that satisfies the service rule (letters and digits, with at least one of each)."""
    alphabet = string.ascii_letters + string.digits
    return ApiKey("k1" + "".join(secrets.choice(alphabet) for _ in range(22)))


def spec(name: str, **fields: Any) -> UserSpec:
    """A declared user; only `fields` (and api_user, api_key, role) count as declared."""
    data = {"api_user": f"{name}@{DOMAIN}", "api_key": {"from_env": "KIT_KEY"}, "role": "normal", **fields}
    return UserSpec.model_validate(data)


def plan(
    backend: Backend,
    declared: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    *,
    unavailable: Mapping[str, str] | None = None,
) -> Plan:
    """The pure core's plan of `declared` against everything the backend lists (keys by api_user)."""
    fingerprints = {name.lower(): fingerprint(key, SECRET) for name, key in keys.items()}
    inputs = KeyInputs(fingerprints=fingerprints, unavailable=dict(unavailable or {}))
    # Only the kit's own users: the account also holds the admin the harness authenticates as.
    targets = (f"*@{DOMAIN}",)
    return make_plan(declared, backend.users.list(), desired_digest="kit", keys=inputs, targets=targets)


def apply(backend: Backend, changes: Sequence[Change], keys: Mapping[str, ApiKey]) -> list[LiveUser]:
    """Each change through the seam, in the plan's order; what the backend answered. A user's
    second change is sent with the version its first one made, as apply does."""
    versions: dict[str, str | None] = {}
    written = []
    for change in changes:
        seen = versions.get(change.api_user.lower(), change.version)
        user = apply_one(backend, replace(change, version=seen), keys)
        if user is not None:
            versions[user.api_user.lower()] = user.version
            written.append(user)
    return written


def apply_one(backend: Backend, change: Change, keys: Mapping[str, ApiKey]) -> LiveUser | None:
    users, name = backend.users, change.api_user
    key = keys.get(name)
    notes = {FINGERPRINT_ANNOTATION: fingerprint(key, SECRET)} if key is not None else {}
    if change.action is Action.CREATE:
        assert key is not None, f"no key for {name}"
        return record_key_time(backend, users.create(name, change.new_values(), key, notes))
    if change.action is Action.LOCK:
        return users.lock(name, if_match=change.version)
    if change.action is Action.UNLOCK:
        return users.unlock(name, if_match=change.version)
    if change.action is Action.DELETE:
        users.delete(name, if_match=change.version)
        return None
    if change.key_change and key is not None:
        written = users.set_key(
            name, key, changes=change.new_values(), annotations=dict(notes), if_match=change.version
        )
        return record_key_time(backend, written)
    return users.update(name, change.new_values(), if_match=change.version)


def record_key_time(backend: Backend, user: LiveUser) -> LiveUser:
    """As apply does after setting a key: record the service's own key time beside the fingerprint."""
    stamp = user.key_updated_at.isoformat() if user.key_updated_at else None
    notes: dict[str, str | None] = {KEY_UPDATED_ANNOTATION: stamp}
    return backend.users.update(user.api_user, {}, annotations=notes, if_match=user.version)


def converge(backend: Backend, declared: Sequence[UserSpec], keys: Mapping[str, ApiKey]) -> Plan:
    """Plan, apply, and return the plan made afterwards (empty when the backend kept everything)."""
    apply(backend, plan(backend, declared, keys).changes, keys)
    return plan(backend, declared, keys)


def describe(found: Plan) -> str:
    """A plan in one line per change, for an assertion message (no key values: fields only)."""
    return "; ".join(
        f"{c.action.value} {c.api_user} {[f.field for f in c.fields]} {c.key_reason or ''}".strip()
        for c in found.changes
    )
