"""The `memory` backend: an account held in this process, for tests and examples.

It keeps the seam's whole contract (reconciler/backend/base.py) with no network: users with
versions and conditional writes (`ChangedSincePlan`), annotations, an operation log that records
each write's `RunIdentity`, leases with tokens that fence writes, and gateway reports. A test
narrows what it declares with `capabilities=` (no leases, no annotations, fewer fields, ...); the
parts the capabilities leave out are None and the data they would keep is not kept.

`MemoryAccount` is the service's side (the data, shared by every connection to it);
`MemoryBackend` is one connection: who it authenticates as, the run's identity, its lease token.
`FACTORY.open(settings)` connects to the process-wide account named by `settings.api_url`, so
every command run in one process (a test calling the CLI) sees the same account.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from reconciler.backend.base import (
    ALL_FIELDS,
    Backend,
    Capabilities,
    GatewayReports,
    Leases,
    OperationLog,
    RunIdentity,
    Users,
)
from reconciler.config import Settings, service_api_key
from reconciler.errors import (
    AuthError,
    ChangedSincePlan,
    Conflict,
    LeaseLost,
    LockHeld,
    NotFound,
    ServiceError,
)
from reconciler.model import Lease, LiveUser, Operation
from reconciler.secrets import ApiKey

FULL = Capabilities(
    conditional_writes=True,
    leases=True,
    operation_log=True,
    gateway_reports=True,
    annotations=True,
)


@dataclass
class _Record:
    attributes: dict[str, Any]
    key: ApiKey
    annotations: dict[str, str]
    version: int
    created_at: datetime
    updated_at: datetime
    key_updated_at: datetime


@dataclass
class MemoryAccount:
    """The data of one account. Every method holds the account's lock, so connections may be
    shared by apply's worker threads. `fail_writes_for` (lowercased api_users) makes their writes
    fail, as a service that refuses one change mid-run; `ignore_writes_for` makes updates to them
    answer success and change nothing, as a service that silently drops a change."""

    users: dict[str, _Record] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)
    leases: dict[str, Lease] = field(default_factory=dict)
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_writes_for: set[str] = field(default_factory=set)
    ignore_writes_for: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _next_version: int = 0

    def bump(self) -> int:
        self._next_version += 1
        return self._next_version

    def seed(self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, **annotations: str) -> None:
        """Put a user in place as if made in the console (no operation logged)."""
        now = datetime.now(UTC)
        with self.lock:
            self.users[api_user.lower()] = _Record(
                {"api_user": api_user, **attributes}, api_key, dict(annotations), self.bump(), now, now, now
            )

    def key_of(self, api_user: str) -> ApiKey | None:
        with self.lock:
            record = self.users.get(api_user.lower())
            return record.key if record else None


class MemoryBackend:
    """One connection to a `MemoryAccount`, authenticated as `api_user`."""

    name = "memory"

    def __init__(
        self,
        account: MemoryAccount | None = None,
        capabilities: Capabilities = FULL,
        *,
        api_user: str = "reconciler@example.com",
        api_key: ApiKey | None = None,
    ) -> None:
        self.account = account if account is not None else MemoryAccount()
        self.capabilities = capabilities
        self.api_user = api_user
        self.api_key = api_key
        self.identity: RunIdentity | None = None
        self.token: str | None = None
        self._lost: str | None = None
        self.users: Users = _Users(self)
        self.leases: Leases | None = _Leases(self) if capabilities.leases else None
        self.operation_log: OperationLog | None = _Log(self) if capabilities.operation_log else None
        self.gateways: GatewayReports | None = _Gateways(self) if capabilities.gateway_reports else None

    def identify(self, identity: RunIdentity) -> None:
        self.identity = identity

    def use_lease(self, token: str) -> None:
        self.token = token

    def lose_lease(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason

    @property
    def lease_lost(self) -> str | None:
        return self._lost

    def use_api_key(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        """As http-v2: True (and `declared` is used from now on) when the configured key is refused
        but the declared one is accepted."""
        current = self.account.key_of(self.api_user)
        if current is None or self.api_key is None or current == self.api_key:
            return False
        if current != declared:
            raise AuthError(f"{self.api_user}: the key is refused", status=401)
        self.use_api_key(declared)
        return True

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MemoryBackend(api_user={self.api_user!r})"

    # For the parts below: one write, logged with the run's identity.

    def check_write(self, api_user: str) -> None:
        if self._lost is not None:
            raise LeaseLost(f"{api_user}: not sent: {self._lost}", code="lease_lost")
        held = self.account.leases.get("reconcile")
        if self.token is not None and (held is None or _token(held) != self.token or _expired(held)):
            self.lose_lease("the service answered lease_lost: the lease expired or was broken")
            raise LeaseLost(f"{api_user}: the lease expired or was broken", 409, "lease_lost")
        if api_user.lower() in self.account.fail_writes_for:
            raise ServiceError(f"{api_user}: HTTP 500: internal error (injected)", status=500)

    def log(self, action: str, api_user: str | None, fields: list[str]) -> None:
        who = self.identity
        self.account.operations.append(
            Operation(
                id=len(self.account.operations) + 1,
                at=datetime.now(UTC),
                actor_api_user=self.api_user,
                actor=who.actor if who else None,
                commit=who.commit if who else None,
                run=who.run if who else None,
                source="reconciler" if who else "api",
                action=action,
                api_user=api_user,
                fields=tuple(sorted(fields)),
            )
        )

    def live(self, record: _Record) -> LiveUser:
        shown = {
            k: v for k, v in record.attributes.items() if k == "api_user" or _stored(self.capabilities, k)
        }
        return LiveUser.model_validate(
            {
                **shown,
                "key_updated_at": record.key_updated_at,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "annotations": dict(record.annotations) if self.capabilities.annotations else {},
                "version": str(record.version) if self.capabilities.conditional_writes else None,
            }
        )


def _stored(capabilities: Capabilities, key: str) -> bool:
    if key == "access":
        return any(f.startswith("access.") for f in capabilities.fields)
    return key in capabilities.fields


def _token(lease: Lease) -> str:
    return lease.token.get_secret_value() if lease.token else ""


def _expired(lease: Lease) -> bool:
    return lease.expires_at <= datetime.now(UTC)


class _Users:
    def __init__(self, conn: MemoryBackend) -> None:
        self.conn = conn
        self.account = conn.account

    def list(self) -> list[LiveUser]:
        with self.account.lock:
            records = sorted(self.account.users.values(), key=lambda r: str(r.attributes["api_user"]).lower())
            return [self.conn.live(r) for r in records]

    def get(self, api_user: str) -> LiveUser | None:
        with self.account.lock:
            record = self.account.users.get(api_user.lower())
            return self.conn.live(record) if record else None

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        with self.account.lock:
            existing = self.account.users.get(api_user.lower())
            if existing is not None:
                # Crossplane's contract: a create that finds its own intended user (a retry) is done.
                if _contains(existing.attributes, attributes) and existing.key == api_key:
                    return self.conn.live(existing)
                raise Conflict(f"POST /api_users: {api_user} already exists", status=409, code="exists")
            self.conn.check_write(api_user)
            now = datetime.now(UTC)
            notes = dict(annotations) if self.conn.capabilities.annotations else {}
            record = _Record(
                {"api_user": api_user, **attributes}, api_key, notes, self.account.bump(), now, now, now
            )
            self.account.users[api_user.lower()] = record
            self.conn.log("create", api_user, sorted(_paths(attributes)))
            return self.conn.live(record)

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
        return self._write(api_user, dict(changes or {}), api_key, annotations, if_match)

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._write(api_user, {"locked": True}, None, None, if_match, action="lock")

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._write(api_user, {"locked": False}, None, None, if_match, action="unlock")

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        with self.account.lock:
            record = self.account.users.get(api_user.lower())
            if record is None:
                return  # already gone is success
            self._check_version(api_user, record, if_match)
            self.conn.check_write(api_user)
            del self.account.users[api_user.lower()]
            self.conn.log("delete", api_user, [])

    def _write(
        self,
        api_user: str,
        changes: dict[str, Any],
        api_key: ApiKey | None,
        annotations: dict[str, str | None] | None,
        if_match: str | None,
        *,
        action: str | None = None,
    ) -> LiveUser:
        with self.account.lock:
            record = self.account.users.get(api_user.lower())
            if record is None:
                raise NotFound(f"{api_user}: no such API user", status=404)
            self._check_version(api_user, record, if_match)
            self.conn.check_write(api_user)
            if api_user.lower() in self.account.ignore_writes_for:
                return self.conn.live(record)
            now = datetime.now(UTC)
            record.attributes = _merge(record.attributes, changes)
            if annotations and self.conn.capabilities.annotations:
                record.annotations = _annotated(record.annotations, annotations)
            if api_key is not None and api_key != record.key:
                record.key, record.key_updated_at = api_key, now
            record.version, record.updated_at = self.account.bump(), now
            fields = sorted(_paths(changes)) + (["api_key"] if api_key is not None else [])
            self.conn.log(action or ("key_change" if api_key is not None else "update"), api_user, fields)
            return self.conn.live(record)

    def _check_version(self, api_user: str, record: _Record, if_match: str | None) -> None:
        if (
            self.conn.capabilities.conditional_writes
            and if_match is not None
            and if_match != str(record.version)
        ):
            raise ChangedSincePlan(
                f"{api_user}: changed on the service since the plan (version_mismatch)",
                status=412,
                code="version_mismatch",
            )


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _annotated(current: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    result = dict(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def _paths(changes: dict[str, Any]) -> list[str]:
    return [f"{k}.{sub}" for k, v in changes.items() if isinstance(v, dict) for sub in v] + [
        k for k, v in changes.items() if not isinstance(v, dict)
    ]


def _contains(live: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(
        _contains(live.get(k) or {}, v) if isinstance(v, dict) else live.get(k) == v
        for k, v in wanted.items()
    )


class _Leases:
    def __init__(self, conn: MemoryBackend) -> None:
        self.conn = conn
        self.account = conn.account

    def acquire(self, name: str, request: dict[str, Any]) -> Lease:
        with self.account.lock:
            held = self.account.leases.get(name)
            if held is not None and not _expired(held):
                shown = held.model_copy(update={"token": None})
                raise LockHeld(f"another run holds the service lease '{name}': {shown.describe()}", shown)
            return self._grant(name, request, secrets.token_hex(16))

    def renew(self, name: str, token: str, request: dict[str, Any]) -> Lease:
        with self.account.lock:
            held = self.account.leases.get(name)
            if held is None or _expired(held) or _token(held) != token:
                raise LeaseLost(f"the lease '{name}' expired or was broken", 412, "lease_lost")
            return self._grant(name, request, token, acquired=held.acquired_at)

    def release(self, name: str, token: str) -> None:
        with self.account.lock:
            held = self.account.leases.get(name)
            if held is not None and _token(held) == token:
                del self.account.leases[name]

    def get(self, name: str) -> Lease | None:
        with self.account.lock:
            held = self.account.leases.get(name)
            return None if held is None or _expired(held) else held.model_copy(update={"token": None})

    def force_release(self, name: str) -> bool:
        with self.account.lock:
            if self.account.leases.pop(name, None) is None:
                return False
            self.conn.log("lease_force", None, [name])
            return True

    def _grant(
        self, name: str, request: dict[str, Any], token: str, acquired: datetime | None = None
    ) -> Lease:
        now = datetime.now(UTC)
        lease = Lease(
            name=name,
            holder=str(request["holder"]),
            host=str(request["host"]),
            pid=int(request["pid"]),
            command=str(request["command"]),
            acquired_at=acquired or now,
            expires_at=now + timedelta(seconds=float(request.get("ttl_seconds", 60))),
            token=SecretStr(token),
            process_started=str(request.get("process_started", "")),
        )
        self.account.leases[name] = lease
        return lease


class _Log:
    def __init__(self, conn: MemoryBackend) -> None:
        self.account = conn.account

    def operations(
        self, since: datetime | None = None, api_user: str | None = None, limit: int = 100
    ) -> list[Operation]:
        with self.account.lock:
            found = [
                op
                for op in reversed(self.account.operations)
                if (since is None or op.at >= since)
                and (api_user is None or (op.api_user or "").lower() == api_user.lower())
            ]
        return found[:limit]


class _Gateways:
    def __init__(self, conn: MemoryBackend) -> None:
        self.account = conn.account

    def list(self) -> list[dict[str, Any]]:
        with self.account.lock:
            return [dict(r) for _, r in sorted(self.account.gateways.items())]

    def report(self, name: str, report: dict[str, Any]) -> None:
        with self.account.lock:
            self.account.gateways[name] = {
                **report,
                "name": name,
                "reported_at": datetime.now(UTC).isoformat(),
            }


_ACCOUNTS: dict[str, MemoryAccount] = {}
_ACCOUNTS_LOCK = threading.Lock()


def account_for(url: str) -> MemoryAccount:
    """The process-wide account named `url` (created empty on first use)."""
    with _ACCOUNTS_LOCK:
        return _ACCOUNTS.setdefault(url, MemoryAccount())


class _Factory:
    name = "memory"
    summary = "an account held in this process, for tests and examples (nothing is kept after exit)"
    capabilities = FULL

    def open(self, settings: Settings) -> Backend:
        secret = service_api_key(settings)
        key = ApiKey(secret.get_secret_value()) if secret is not None else None
        return MemoryBackend(
            account_for(settings.api_url), api_user=settings.api_user or "reconciler@example.com", api_key=key
        )


FACTORY = _Factory()

__all__ = ["ALL_FIELDS", "FACTORY", "FULL", "MemoryAccount", "MemoryBackend", "account_for"]
