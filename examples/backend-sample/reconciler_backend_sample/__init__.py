"""`sample-file`: API users kept in one JSON file, named by RECONCILER_API_URL (`file:///path`).

The smallest complete backend (docs/backends.md): it declares its capabilities as data, keeps
the write contract (a create that finds the user it intended is done; deleting a user already
gone is success; a conditional write to a user that moved is ChangedSincePlan) and raises only
reconciler.errors types. It has no leases, no operation log and no gateway reports, so those
parts are None and the reconciler falls back to its local lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler.backend.base import (
    Backend,
    Capabilities,
    GatewayReports,
    Leases,
    OperationLog,
    RunIdentity,
    Users,
)
from reconciler.config import Settings
from reconciler.errors import ChangedSincePlan, ConfigError, Conflict, NotFound
from reconciler.model import LiveUser
from reconciler.secrets import ApiKey

CAPABILITIES = Capabilities(conditional_writes=True, annotations=True)


class FileUsers:
    """The `Users` protocol over a JSON file; every write is one locked read-modify-write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self) -> list[LiveUser]:
        with self._data() as users:
            return [_live(u) for _, u in sorted(users.items())]

    def get(self, api_user: str) -> LiveUser | None:
        with self._data() as users:
            found = users.get(api_user.lower())
            return _live(found) if found else None

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        with self._data(write=True) as users:
            existing = users.get(api_user.lower())
            if existing is not None:
                if existing["key_hash"] == _hash(api_key, existing["salt"]) and _has(existing, attributes):
                    return _live(existing)  # sent again after a lost answer: done
                raise Conflict(f"{api_user} already exists", status=409, code="exists")
            salt, now = secrets.token_hex(8), _now()
            users[api_user.lower()] = {
                **_merge({"role": "normal"}, attributes),
                "api_user": api_user,
                "annotations": dict(annotations),
                "salt": salt,
                "key_hash": _hash(api_key, salt),
                "key_updated_at": now,
                "version": secrets.token_hex(6),
            }
            return _live(users[api_user.lower()])

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        return self._write(api_user, changes, None, annotations, if_match)

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        return self._write(api_user, changes or {}, api_key, annotations, if_match)

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._write(api_user, {"locked": True}, None, None, if_match)

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._write(api_user, {"locked": False}, None, None, if_match)

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        with self._data(write=True) as users:
            found = users.get(api_user.lower())
            if found is None:
                return  # already gone is success
            _check(api_user, found, if_match)
            del users[api_user.lower()]

    def _write(
        self,
        api_user: str,
        changes: dict[str, Any],
        api_key: ApiKey | None,
        annotations: dict[str, str | None] | None,
        if_match: str | None,
    ) -> LiveUser:
        with self._data(write=True) as users:
            found = users.get(api_user.lower())
            if found is None:
                raise NotFound(f"{api_user}: no such API user", status=404)
            _check(api_user, found, if_match)
            user = _merge(found, changes)
            notes = {**user["annotations"], **(annotations or {})}
            user["annotations"] = {k: v for k, v in notes.items() if v is not None}
            if api_key is not None:
                user["key_hash"], user["key_updated_at"] = _hash(api_key, user["salt"]), _now()
            user["version"] = secrets.token_hex(6)
            users[api_user.lower()] = user
            return _live(user)

    @contextmanager
    def _data(self, *, write: bool = False) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            users = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield users
            if write:
                temp = self.path.with_suffix(".tmp")
                temp.write_text(json.dumps(users, sort_keys=True))
                os.chmod(temp, 0o600)
                os.replace(temp, self.path)


class FileBackend:
    name = "sample-file"
    capabilities = CAPABILITIES

    def __init__(self, path: Path) -> None:
        self.users: Users = FileUsers(path)
        self.leases: Leases | None = None
        self.operation_log: OperationLog | None = None
        self.gateways: GatewayReports | None = None
        self._lost: str | None = None

    def identify(self, identity: RunIdentity) -> None:
        pass  # nothing records who wrote (no operation log)

    def use_lease(self, token: str) -> None:
        pass  # no leases

    def lose_lease(self, reason: str) -> None:
        self._lost = reason

    @property
    def lease_lost(self) -> str | None:
        return self._lost

    def use_api_key(self, api_key: ApiKey) -> None:
        pass  # a file needs no credentials

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        return False

    def close(self) -> None:
        pass


class Factory:
    name = "sample-file"
    summary = "API users in a JSON file (RECONCILER_API_URL=file:///path/users.json)"
    capabilities = CAPABILITIES

    def open(self, settings: Settings) -> Backend:
        url = urlsplit(settings.api_url)
        if url.scheme != "file" or not url.path:
            raise ConfigError("sample-file: RECONCILER_API_URL must be file:///path/to/users.json")
        return FileBackend(Path(url.path))


FACTORY = Factory()


def _live(user: dict[str, Any]) -> LiveUser:
    shown = {k: v for k, v in user.items() if k not in {"salt", "key_hash"}}
    return LiveUser.model_validate(shown)


def _check(api_user: str, user: dict[str, Any], if_match: str | None) -> None:
    if if_match is not None and if_match != user["version"]:
        raise ChangedSincePlan(f"{api_user}: changed since the plan", status=412, code="version_mismatch")


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if nested else value
    return merged


def _has(user: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(
        _has(user.get(k) or {}, v) if isinstance(v, dict) else user.get(k) == v for k, v in wanted.items()
    )


def _hash(key: ApiKey, salt: str) -> str:
    return hashlib.scrypt(key.reveal().encode(), salt=salt.encode(), n=2**10, r=8, p=1).hex()


def _now() -> str:
    return datetime.now(UTC).isoformat()
