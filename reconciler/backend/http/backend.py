"""`HttpBackend`: the seam (reconciler/backend/base.py) over `ServiceClient`."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler.backend.base import (
    Backend,
    Capabilities,
    GatewayReports,
    Leases,
    OperationLog,
    RunIdentity,
    Users,
)
from reconciler.backend.http.client import ServiceClient
from reconciler.config import Settings
from reconciler.errors import AuthError, NotFound
from reconciler.model import Lease, LiveUser, Operation
from reconciler.secrets import ApiKey

CAPABILITIES = Capabilities(
    conditional_writes=True,
    leases=True,
    operation_log=True,
    gateway_reports=True,
    annotations=True,
)


class _Users:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def list(self) -> list[LiveUser]:
        return self._client.list_users()

    def get(self, api_user: str) -> LiveUser | None:
        return self._client.get_user(api_user)

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        return self._client.create_user(api_user, attributes, api_key, annotations)

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        return self._client.update_user(api_user, changes, annotations=annotations, if_match=if_match)

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        return self._client.update_user(
            api_user, dict(changes or {}), api_key, annotations, if_match=if_match
        )

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._client.update_user(api_user, {"locked": True}, if_match=if_match)

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        return self._client.update_user(api_user, {"locked": False}, if_match=if_match)

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        # The seam's contract (base.py): deleting a user that is already gone is success.
        with contextlib.suppress(NotFound):
            self._client.delete_user(api_user, if_match=if_match)


class _Leases:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def acquire(self, name: str, request: dict[str, Any]) -> Lease:
        return self._client.acquire_lease(name, request)

    def renew(self, name: str, token: str, request: dict[str, Any]) -> Lease:
        return self._client.renew_lease(name, token, request)

    def release(self, name: str, token: str) -> None:
        self._client.release_lease(name, token)

    def get(self, name: str) -> Lease | None:
        return self._client.get_lease(name)

    def force_release(self, name: str) -> bool:
        return self._client.force_release_lease(name)


class _OperationLog:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def operations(
        self, since: datetime | None = None, api_user: str | None = None, limit: int = 100
    ) -> list[Operation]:
        return self._client.operations(since=since, api_user=api_user, limit=limit) or []


class _Gateways:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        try:
            return self._client.list_gateways()
        except NotFound:
            return []  # a service that predates gateway reports: nothing has reported

    def report(self, name: str, report: dict[str, Any]) -> None:
        self._client.report_gateway(name, report)


class HttpBackend:
    """The seam over one `ServiceClient`. A contract 2.0 service has no leases and no operation
    log: that is found out here, once, by one request (`GET /operations?limit=1`, 404 there), the
    first time anything reads `capabilities`, and nowhere else."""

    name = "http-v2"

    def __init__(self, client: ServiceClient, capabilities: Capabilities | None = None) -> None:
        self.client = client
        self._capabilities = capabilities
        self._users = _Users(client)
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        with self._lock:
            if self._capabilities is None:
                found = _discover(self.client)
                if found is None:
                    return CAPABILITIES  # undecided: asked again once the key works
                self._capabilities = found
            return self._capabilities

    @property
    def users(self) -> Users:
        return self._users

    @property
    def leases(self) -> Leases | None:
        return _Leases(self.client) if self.capabilities.leases else None

    @property
    def operation_log(self) -> OperationLog | None:
        return _OperationLog(self.client) if self.capabilities.operation_log else None

    @property
    def gateways(self) -> GatewayReports | None:
        # Not part of what is discovered: asking would cost a gateway's render one more request.
        declared = self._capabilities or CAPABILITIES
        return _Gateways(self.client) if declared.gateway_reports else None

    def identify(self, identity: RunIdentity) -> None:
        self.client.set_run_headers(identity.actor, identity.commit, identity.run)

    def use_lease(self, token: str) -> None:
        self.client.use_lease(token)

    def lose_lease(self, reason: str) -> None:
        self.client.lose_lease(reason)

    @property
    def lease_lost(self) -> str | None:
        return self.client.lease_lost

    def use_api_key(self, api_key: ApiKey) -> None:
        self.client.use_api_key(api_key)

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        return self.client.settle_rotated_key(declared)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"HttpBackend({self.client!r})"


def _discover(client: ServiceClient) -> Capabilities | None:
    """Contract 2.1 (leases, operation log) or 2.0 (neither): one request. A user who may not read
    the log (403) still talks to a 2.1 service. A refused key (401: the reconciler's own key was
    rotated by a run that lost the answer, settled right after) decides nothing: None."""
    try:
        has_log = client.operations(limit=1) is not None
    except AuthError as exc:
        if exc.status == 401:
            return None
        if exc.status != 403:
            raise
        has_log = True
    if has_log:
        return CAPABILITIES
    return replace(CAPABILITIES, leases=False, operation_log=False)


class _Factory:
    name = "http-v2"
    summary = "the project's HTTP contract (docs/contract.md), as the embedded service implements it"
    capabilities = CAPABILITIES

    def open(self, settings: Settings) -> Backend:
        return HttpBackend(ServiceClient.from_settings(settings))


FACTORY = _Factory()
