"""The `cmc-console` backend: a real Customers Mail Cloud account (docs/cmc.md).

Its published APIs have no resource for API users, so it cannot write and cannot list: a person
applies the plan in the console (a guided session, reconciler/workflows/guided.py) and the backend
observes by probing (transport.py). `steps.py` words the plan as the console's steps; `expect.py`
says what the probes must see for a declared user.
"""

from __future__ import annotations

from typing import Any, NoReturn

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
from reconciler.backend.cmc.steps import OBSERVABLE
from reconciler.backend.cmc.transport import Transport
from reconciler.config import Settings
from reconciler.errors import ReconcilerError
from reconciler.model import LiveUser
from reconciler.secrets import ApiKey

CAPABILITIES = Capabilities(
    fields=ALL_FIELDS,
    observable=OBSERVABLE,
    can_list=False,
    can_write=False,
    locks=True,
)


def _refuse(what: str) -> NoReturn:
    raise ReconcilerError(
        f"the cmc-console backend cannot {what}: a person does it in the console "
        "(`reconciler apply` guides them, `reconciler verify` checks it; docs/cmc.md)"
    )


class _Users:
    """The seam's user operations; none of them exists on this service."""

    def list(self) -> list[LiveUser]:
        _refuse("list API users")

    def get(self, api_user: str) -> LiveUser | None:
        _refuse("read an API user back (it probes instead)")

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        _refuse("add an API user")

    def update(self, api_user: str, changes: dict[str, Any], **_: Any) -> LiveUser:
        _refuse("edit an API user")

    def set_key(self, api_user: str, api_key: ApiKey, **_: Any) -> LiveUser:
        _refuse("change an API key")

    def lock(self, api_user: str, **_: Any) -> LiveUser:
        _refuse("lock an API user")

    def unlock(self, api_user: str, **_: Any) -> LiveUser:
        _refuse("unlock an API user")

    def delete(self, api_user: str, **_: Any) -> None:
        _refuse("delete an API user")


class CmcBackend:
    name = "cmc-console"
    capabilities = CAPABILITIES

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.users: Users = _Users()
        self.leases: Leases | None = None
        self.operation_log: OperationLog | None = None
        self.gateways: GatewayReports | None = None

    def identify(self, identity: RunIdentity) -> None:
        """Nothing to send: the console records its own operator."""

    def use_lease(self, token: str) -> None:
        """No leases on this service."""

    def lose_lease(self, reason: str) -> None:
        """No leases, no writes: nothing to fence."""

    @property
    def lease_lost(self) -> str | None:
        return None

    def use_api_key(self, api_key: ApiKey) -> None:
        """The admin credential is only read (the audit log); it is never rotated by a run."""

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        """A run never rotates a key here (a person does, in the console): nothing to settle."""
        return False

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"CmcBackend({self.transport!r})"


class _Factory:
    name = "cmc-console"
    summary = "a Customers Mail Cloud account: the plan as console steps, verified by probes (docs/cmc.md)"
    capabilities = CAPABILITIES

    def open(self, settings: Settings) -> Backend:
        return CmcBackend(Transport.from_settings(settings))


FACTORY = _Factory()

__all__ = ["CAPABILITIES", "FACTORY", "CmcBackend"]
