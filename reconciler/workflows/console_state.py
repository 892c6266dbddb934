"""Where the console workflows keep what they verified: a `StateStore` (reconciler/backend/base.py).

`open_store` uses the project's state store when it is installed (the module reconciler.run.store) and
else a local JSON file in the state directory, with the same compare-and-swap contract.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.backend.base import StateSnapshot, StateStore
from reconciler.errors import ReconcilerError, StateError

FILE = "cmc-state.json"


class StateConflict(ReconcilerError):
    """Another run wrote the state since this one read it."""


# The project's store raises its own StateConflict (reconciler.errors) once it is installed.
_CONFLICTS: tuple[type[BaseException], ...] = (
    StateConflict,
    *((errors.StateConflict,) if hasattr(errors, "StateConflict") else ()),
)


class LocalJsonStore:
    """users -> {key: value} in one JSON file, replaced atomically under an flock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> StateSnapshot:
        raw = self._raw()
        if raw is None:
            return StateSnapshot({}, None)
        try:
            users = json.loads(raw)
        except ValueError:
            raise StateError(f"{self.path} is not JSON; move it away to start over") from None
        return StateSnapshot(users, _revision(raw))

    def write(self, users: Mapping[str, Mapping[str, str]], *, expected: str | None) -> str:
        data = json.dumps({k: dict(v) for k, v in sorted(users.items())}, sort_keys=True, indent=1).encode()
        with self._locked():
            raw = self._raw()
            current = None if raw is None else _revision(raw)
            if current != expected:
                raise StateConflict(f"{self.path} changed since this run read it; run again")
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        return _revision(data)

    def _raw(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _revision(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def open_store(settings: Any, users_dir: Path, state_dir: Path) -> StateStore:
    """The project's store (`state_store: local|git`) when reconciler.run.store provides one."""
    try:
        module = importlib.import_module("reconciler.run.store")
    except ImportError:
        module = None
    opener = getattr(module, "open_store", None)
    if opener is not None:
        store: StateStore = opener(settings, users_dir)
        return store
    return LocalJsonStore(state_dir / FILE)


def update(store: StateStore, changes: Mapping[str, Mapping[str, str] | None]) -> None:
    """Merge `changes` into the state (None removes a user), retrying once if another run won."""
    for attempt in range(2):
        snapshot = store.read()
        users = {k: dict(v) for k, v in snapshot.users.items()}
        for name, entry in changes.items():
            if entry is None:
                users.pop(name, None)
            else:
                users[name] = {**users.get(name, {}), **entry}
        try:
            store.write(users, expected=snapshot.revision)
            return
        except _CONFLICTS:
            if attempt:
                raise
