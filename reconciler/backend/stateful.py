"""Annotations for a backend that has none (`capabilities.annotations` false), kept in a
`StateStore` (reconciler/run/store.py: the state directory, or a ref in the users repository).

`StatefulBackend` wraps the backend: the annotations the reconciler records (key fingerprint, key
source, key time) are merged into `LiveUser.annotations` on list/get, recorded on create,
set_key and update(annotations=...), removed on delete, and written back with compare-and-swap
by `flush()` (also on `close()`), so two runs cannot both win: the second gets StateConflict.

When the store holds no state yet, nothing says which keys were set by the reconciler: the plan
lists those users' key checks as skipped, "no recorded state yet" (`without_recorded_state`),
in every format, instead of reporting every key as changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from reconciler.backend.base import (
    Backend,
    Capabilities,
    GatewayReports,
    Leases,
    OperationLog,
    RunIdentity,
    StateStore,
    Users,
)
from reconciler.errors import NotFound
from reconciler.model import LiveUser
from reconciler.plan import KeyInputs
from reconciler.secrets import ApiKey

NO_STATE = "no recorded state yet"


class StatefulBackend:
    """`inner` with annotations kept in `store`. Thread-safe (apply writes from a pool)."""

    def __init__(self, inner: Backend, store: StateStore) -> None:
        snapshot = store.read()
        self.inner, self.store = inner, store
        self.name = inner.name
        self.capabilities: Capabilities = replace(inner.capabilities, annotations=True)
        self.users: Users = _Users(self, inner.users)
        self.leases: Leases | None = inner.leases
        self.operation_log: OperationLog | None = inner.operation_log
        self.gateways: GatewayReports | None = inner.gateways
        self.revision = snapshot.revision
        self._state = {name.lower(): dict(notes) for name, notes in snapshot.users.items()}
        self._dirty = False
        self._lock = threading.Lock()

    @property
    def has_state(self) -> bool:
        """False until a run has written the store once."""
        return self.revision is not None

    def annotations_of(self, api_user: str) -> dict[str, str]:
        with self._lock:
            return dict(self._state.get(api_user.lower(), {}))

    def record(self, api_user: str, notes: Mapping[str, str | None], *, replace_all: bool = False) -> None:
        with self._lock:
            current = {} if replace_all else self._state.get(api_user.lower(), {})
            merged = {**current, **notes}
            self._state[api_user.lower()] = {k: v for k, v in merged.items() if v is not None}
            self._dirty = True

    def forget(self, api_user: str) -> None:
        with self._lock:
            self._dirty |= self._state.pop(api_user.lower(), None) is not None

    def flush(self) -> None:
        """Write what this run recorded (compare-and-swap against what it read): StateConflict
        when another run wrote the store in between."""
        with self._lock:
            if not self._dirty:
                return
            self.revision = self.store.write(self._state, expected=self.revision)
            self._dirty = False

    # The rest of the seam is the inner backend's.

    def identify(self, identity: RunIdentity) -> None:
        self.inner.identify(identity)

    def use_lease(self, token: str) -> None:
        self.inner.use_lease(token)

    def lose_lease(self, reason: str) -> None:
        self.inner.lose_lease(reason)

    @property
    def lease_lost(self) -> str | None:
        return self.inner.lease_lost

    def use_api_key(self, api_key: ApiKey) -> None:
        self.inner.use_api_key(api_key)

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        return self.inner.settle_rotated_key(declared)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.inner.close()

    def __repr__(self) -> str:
        return f"StatefulBackend({self.inner!r})"


class _Users:
    def __init__(self, owner: StatefulBackend, inner: Users) -> None:
        self.owner, self.inner = owner, inner

    def list(self) -> list[LiveUser]:
        return [self._merged(u) for u in self.inner.list()]

    def get(self, api_user: str) -> LiveUser | None:
        found = self.inner.get(api_user)
        return self._merged(found) if found is not None else None

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        made = self.inner.create(api_user, attributes, api_key, {})
        self.owner.record(api_user, annotations, replace_all=True)
        return self._merged(made)

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        updated = self._written(api_user, changes, if_match) if changes else self._current(api_user)
        if annotations:
            self.owner.record(api_user, annotations)
        return self._merged(updated)

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        updated = self.inner.set_key(api_user, api_key, changes=changes, if_match=if_match)
        if annotations:
            self.owner.record(api_user, annotations)
        return self._merged(updated)

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._merged(self.inner.lock(api_user, if_match=if_match))

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._merged(self.inner.unlock(api_user, if_match=if_match))

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        self.inner.delete(api_user, if_match=if_match)
        self.owner.forget(api_user)

    def _written(self, api_user: str, changes: dict[str, Any], if_match: str | None) -> LiveUser:
        return self.inner.update(api_user, changes, if_match=if_match)

    def _current(self, api_user: str) -> LiveUser:
        # Only annotations change: nothing to send to the service.
        found = self.inner.get(api_user)
        if found is None:
            raise NotFound(f"{api_user}: no such API user", status=404)
        return found

    def _merged(self, user: LiveUser) -> LiveUser:
        notes = self.owner.annotations_of(user.api_user)
        return user.model_copy(update={"annotations": {**user.annotations, **notes}}) if notes else user


def without_recorded_state(inputs: KeyInputs, backend: Backend, live: Iterable[LiveUser]) -> KeyInputs:
    """The plan's key inputs when `backend` keeps its annotations in a store that holds no state
    yet: every live user's key check is skipped, "no recorded state yet", rather than shown as a
    change. Unchanged for any other backend."""
    if not isinstance(backend, StatefulBackend) or backend.has_state:
        return inputs
    names = {u.api_user.lower() for u in live}
    return KeyInputs(
        fingerprints={n: f for n, f in inputs.fingerprints.items() if n not in names},
        sources={n: s for n, s in inputs.sources.items() if n not in names},
        unavailable={**inputs.unavailable, **dict.fromkeys(names, NO_STATE)},
    )


def with_state(backend: Backend, store: StateStore) -> Backend:
    """`backend` itself when it has annotations, else wrapped so that they live in `store`."""
    return backend if backend.capabilities.annotations else StatefulBackend(backend, store)
