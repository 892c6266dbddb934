"""Where the console workflows keep what they verified: the project's state store
(reconciler/run/store.py, the `state_store` setting: local or git), under `cmc/` names per user.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.backend.base import StateStore
from reconciler.config import Settings
from reconciler.errors import StateConflict
from reconciler.run.store import open_store as _open_store


def open_store(settings: Settings, users_dir: Path) -> StateStore:
    return _open_store(settings, users_dir)


def update(store: StateStore, changes: Mapping[str, Mapping[str, str] | None]) -> None:
    """Merge `changes` into the state (None removes a user), reading again once if another run
    wrote it in between: the entries are per user, so a merge of both is what both meant."""
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
        except StateConflict:
            if attempt:
                raise
