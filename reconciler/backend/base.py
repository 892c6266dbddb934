"""The backend seam: what the reconciler needs from a service that holds API users.

A backend is a small set of protocols plus `Capabilities`, which it declares as data (octoDNS's
SUPPORTS, Crossplane's ExternalClient). The core reads the capabilities to decide what it can do
(refuse a declared field the backend cannot store, show a key change as `replace`, fall back to the
local lock without leases); it never probes a backend by catching its errors.

The write contract is Crossplane's: a create must not fail because the user already exists in the
intended state (a retry after a lost answer), and deleting a user that is already gone is success.
A write whose answer was lost is settled by the backend itself (read back, or find its own run in
the operation log), so the core sees one outcome per change. Raise `reconciler.errors` types only:
`ChangedSincePlan` for a failed conditional write, `NotFound`, `AuthError`, `ServiceError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from reconciler.capabilities import ALL_FIELDS, Capabilities, KeyUpdate
from reconciler.model import Lease, LiveUser, Operation
from reconciler.secrets import ApiKey


@dataclass(frozen=True)
class RunIdentity:
    """Who runs, from which commit, which run: sent with every write where the backend can record
    it (the http-v2 headers X-Reconciler-Actor/-Commit/-Run)."""

    actor: str
    commit: str | None
    run: str


class Users(Protocol):
    """The API users of one account. `if_match` is the version the plan saw; a backend without
    conditional writes ignores it."""

    def list(self) -> list[LiveUser]:
        """Every user (all pages). Only when `capabilities.can_list`."""
        ...

    def get(self, api_user: str) -> LiveUser | None: ...

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser: ...

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser: ...

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        """Change the key (with `changes` in the same write where the backend can)."""
        ...

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser: ...

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser: ...

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        """Already gone is success."""
        ...


class Leases(Protocol):
    """A lease on the service (contract 2.1), shared by every machine that reconciles."""

    def acquire(self, name: str, request: dict[str, Any]) -> Lease: ...

    def renew(self, name: str, token: str, request: dict[str, Any]) -> Lease: ...

    def release(self, name: str, token: str) -> None: ...

    def get(self, name: str) -> Lease | None: ...

    def force_release(self, name: str) -> bool: ...


class OperationLog(Protocol):
    def operations(
        self, since: datetime | None = None, api_user: str | None = None, limit: int = 100
    ) -> list[Operation]: ...


class GatewayReports(Protocol):
    def list(self) -> list[dict[str, Any]]: ...

    def report(self, name: str, report: dict[str, Any]) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """One connection to one account. Optional parts are None when `capabilities` says so."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def users(self) -> Users: ...

    @property
    def leases(self) -> Leases | None: ...

    @property
    def operation_log(self) -> OperationLog | None: ...

    @property
    def gateways(self) -> GatewayReports | None: ...

    def identify(self, identity: RunIdentity) -> None:
        """Record the run's identity with every later write, where the backend can."""
        ...

    def use_lease(self, token: str) -> None:
        """Fence every later write with this lease token (leases only)."""
        ...

    def lose_lease(self, reason: str) -> None:
        """No write starts after this (the lease renewal failed); later writes raise LeaseLost."""
        ...

    @property
    def lease_lost(self) -> str | None:
        """Why the run's lease was lost (by `lose_lease` or a write answered lease_lost), else None."""
        ...

    def use_api_key(self, api_key: ApiKey) -> None:
        """Authenticate with a new key from now on (after rotating the reconciler's own key)."""
        ...

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        """True (and `declared` is used from now on) when the configured key is refused but the
        key users/ declares for the reconciler's own user is accepted: an earlier run rotated it
        and lost the answer. False when the configured key works; AuthError when neither does."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StateSnapshot:
    """What the reconciler remembers where the backend cannot keep it: per user (lowercased
    api_user), the annotations it would otherwise store on the service (key fingerprint, key
    source, key time, the attributes last applied or verified). `revision` is opaque; None when
    no state exists yet."""

    users: Mapping[str, Mapping[str, str]]
    revision: str | None


class StateStore(Protocol):
    """Local (the state directory) or git (a ref in the users repository). A backend without
    annotations is wrapped so that its annotations live here (reconciler/backend/stateful.py)."""

    def read(self) -> StateSnapshot: ...

    def write(self, users: Mapping[str, Mapping[str, str]], *, expected: str | None) -> str:
        """Compare-and-swap: raises StateConflict when the stored revision is no longer
        `expected` (another run won); returns the new revision."""
        ...


__all__ = [
    "ALL_FIELDS",
    "Backend",
    "Capabilities",
    "GatewayReports",
    "KeyUpdate",
    "Leases",
    "OperationLog",
    "RunIdentity",
    "StateSnapshot",
    "StateStore",
    "Users",
]
