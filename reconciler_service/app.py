"""The embedded service's HTTP API as a werkzeug WSGI application (the contract: docs/contract.md
and openapi.json). Who may see and do what: roles.py.

Request bodies are validated with the rules of the YAML (model.py keeps the service's copy), so the
service and `reconciler validate` reject the same things. Error messages never echo input values.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from importlib import resources
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler_service import wire
from reconciler_service.faults import Fault, FaultConfig, drops_lease_put
from reconciler_service.gateways import GatewayReport, Gateways, valid_name
from reconciler_service.keys import Busy, hash_key
from reconciler_service.leases import LeaseHeld, LeaseLost, NoLease
from reconciler_service.model import UserAttributes
from reconciler_service.oplog import WriteContext
from reconciler_service.roles import FINGERPRINT_ANNOTATION, Caller, visible
from reconciler_service.store import (
    DuplicateUser,
    Replacement,
    Store,
    StoredUser,
    UnknownUser,
    VersionMismatch,
)
from reconciler_service.wire import (
    Annotations,
    ApiError,
    CreateBody,
    KeyBody,
    LeaseBody,
    json_response,
    merge_patch,
)

log = logging.getLogger("reconciler_service")

BASE = "/api/v2"
MAX_ROWS = 100
MAX_BODY = 256 * 1024
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
UNFAULTED = frozenset({"relay_messages", "list_gateways", "put_gateway"})  # faults are for api_users

URLS = Map(
    [
        Rule(f"{BASE}/openapi.json", endpoint="openapi", methods=["GET"]),
        Rule(f"{BASE}/api_users", endpoint="list_users", methods=["GET"]),
        Rule(f"{BASE}/api_users", endpoint="create_user", methods=["POST"]),
        Rule(f"{BASE}/api_users/<api_user>", endpoint="get_user", methods=["GET"]),
        Rule(f"{BASE}/api_users/<api_user>", endpoint="update_user", methods=["PATCH"]),
        Rule(f"{BASE}/api_users/<api_user>", endpoint="delete_user", methods=["DELETE"]),
        Rule(f"{BASE}/relay/messages", endpoint="relay_messages", methods=["GET"]),
        Rule(f"{BASE}/gateways", endpoint="list_gateways", methods=["GET"]),
        Rule(f"{BASE}/gateways/<name>", endpoint="put_gateway", methods=["PUT"]),
        Rule(f"{BASE}/leases/<name>", endpoint="put_lease", methods=["PUT"]),
        Rule(f"{BASE}/leases/<name>", endpoint="get_lease", methods=["GET"]),
        Rule(f"{BASE}/leases/<name>", endpoint="delete_lease", methods=["DELETE"]),
        Rule(f"{BASE}/operations", endpoint="operations", methods=["GET"]),
    ],
    strict_slashes=False,
)


SHARED_STATE_ENDPOINTS = frozenset({"put_lease", "get_lease", "delete_lease", "operations"})
MAX_OPERATIONS = 1000


class ServiceApp:
    """The WSGI application. Stateless apart from the store and the (mutable) fault config."""

    def __init__(self, store: Store, faults: FaultConfig) -> None:
        self.store = store
        self.faults = faults
        self.openapi = resources.files("reconciler_service").joinpath("openapi.json").read_bytes()
        self.gateways = Gateways(store)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            endpoint, args = URLS.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            return wire.http_error(exc).response()
        if endpoint == "openapi":
            return Response(self.openapi, content_type="application/json")
        if self.faults.no_shared_state and endpoint in SHARED_STATE_ENDPOINTS:
            return wire.http_error(NotFound()).response()
        try:
            self._inject(request, endpoint, args.get("api_user"), lease=args.get("name"))
            caller = self._authenticate(request)
            response = getattr(self, endpoint)(request, caller, **args)
        except ApiError as exc:
            response = exc.response()
        except HTTPException as exc:
            # werkzeug raises these while reading the body (413 over MAX_BODY, 400 on a bad
            # encoding): answer them in the contract's error shape, not as an HTML 500.
            response = wire.http_error(exc).response()
        except Exception:  # a bug: still the contract's shape, never werkzeug's HTML page
            log.exception("internal error on %s %s", request.method, request.path)
            response = ApiError.one(500, "internal", "internal error").response()
        self._maybe_drop(request)
        return response  # type: ignore[no-any-return]

    # Faults

    def _inject(
        self, request: Request, endpoint: str, api_user: str | None, *, lease: str | None = None
    ) -> None:
        if endpoint in UNFAULTED:
            return
        request.environ["reconciler.fault"] = fault = self.faults.draw()
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        if fault is Fault.THROTTLE:
            retry_after = str(self.faults.retry_after_s)
            raise ApiError(429, [wire.err("throttled", "too many requests")], {"Retry-After": retry_after})
        if fault is Fault.UNAVAILABLE:
            raise ApiError.one(503, "unavailable", "injected fault: service unavailable")
        if request.method in WRITE_METHODS and self.faults.drops_write_for(
            api_user or wire.body_api_user(request)
        ):
            request.environ["reconciler.fault"] = Fault.DROP
        if endpoint == "put_lease" and drops_lease_put(self.faults, lease):
            request.environ["reconciler.fault"] = Fault.DROP
        if fault is Fault.FAIL or (
            request.method in WRITE_METHODS
            and self.faults.fails_writes_for(api_user or wire.body_api_user(request))
        ):
            raise ApiError.one(500, "internal", "injected fault: internal error")

    def _maybe_drop(self, request: Request) -> None:
        # The request has been processed; cutting the connection now loses the response, which is
        # what the client must settle by reading back.
        if request.environ.get("reconciler.fault") is Fault.DROP:
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)

    # Auth

    def _authenticate(self, request: Request) -> Caller:
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
            raise wire.unauthorized("credentials required (HTTP Basic)")
        try:
            user = self.store.authenticate(auth.username, auth.password)
        except Busy:
            raise ApiError(
                503, [wire.err("busy", "too many logins at once; retry shortly")], {"Retry-After": "1"}
            ) from None
        if user is None:
            raise wire.unauthorized("bad credentials")
        if user.attributes.get("locked"):
            raise wire.unauthorized("this API user is locked")
        if not user.attributes.get("access", {}).get("http_api"):
            raise wire.unauthorized("this API user has no HTTP API access")
        caller = Caller.of(user.api_user, user.attributes, user.annotations)
        if request.method in WRITE_METHODS and not caller.admin:
            raise ApiError.one(403, "forbidden", "only admin API users may change API users")
        return caller

    # Endpoints

    def list_users(self, request: Request, caller: Caller) -> Response:
        page = wire.int_arg(request, "p", 0, 0, 10**9)
        rows = wire.int_arg(request, "r", MAX_ROWS, 1, MAX_ROWS)
        if not caller.reads_all:
            return self._list_self(caller, page)
        hidden = None if caller.admin else FINGERPRINT_ANNOTATION
        users, total = self.store.page_json(page * rows, rows, hidden)
        body = '{"api_users": [' + ", ".join(users) + f'], "total": {total}}}'
        return Response(body, content_type="application/json")

    def _list_self(self, caller: Caller, page: int) -> Response:
        """A user who may see only its own data lists only itself (one page of one)."""
        me = self._existing(caller.api_user)
        return json_response({"api_users": [visible(caller, me.public())] if page == 0 else [], "total": 1})

    def get_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        # 404, not 403, for a user the caller may not see: it must not learn that the name exists.
        if not caller.sees_user(api_user):
            raise wire.not_found()
        return _user_response(self._existing(api_user), caller=caller)

    def create_user(self, request: Request, caller: Caller) -> Response:
        body = wire.validate(CreateBody, wire.json_object(request))
        attributes = body.model_dump(mode="json", include=set(UserAttributes.model_fields))
        context = _write_context(request, caller)
        try:
            user = self.store.create(body.api_user, attributes, body.api_key, dict(body.annotations), context)
        except DuplicateUser:
            raise ApiError.one(
                409, "duplicate", "an API user with this name already exists", "api_user"
            ) from None
        except LeaseLost:
            raise wire.lease_lost() from None
        return _user_response(user, 201, {"Location": f"{BASE}/api_users/{user.api_user}"}, caller=caller)

    def update_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        patch = wire.json_object(request)
        key = (
            wire.validate(KeyBody, {"api_key": patch.pop("api_key")}).api_key if "api_key" in patch else None
        )
        annotations_patch = patch.pop("annotations", {})
        if "api_user" in patch and str(patch.pop("api_user")).lower() != api_user.lower():
            raise ApiError.one(400, "immutable", "api_user cannot be changed", "api_user")
        if self.faults.ignores_writes_for(api_user):
            return _user_response(self._existing(api_user), caller=caller)
        try:
            user = self.store.update(
                api_user,
                lambda cur: self._replacement(cur, patch, annotations_patch, key),
                _write_context(request, caller),
                wire.if_match(request),
            )
        except UnknownUser:
            raise wire.not_found() from None
        except (VersionMismatch, LeaseLost) as exc:
            raise _refused(exc) from None
        return _user_response(user, caller=caller)

    def _replacement(
        self, current: StoredUser, patch: dict[str, Any], annotations_patch: Any, key: str | None
    ) -> Replacement:
        merged = merge_patch(current.attributes, patch)
        attributes = wire.validate(UserAttributes, merged).model_dump(mode="json")
        # A null `annotations` removes them all, as a merge patch of the whole user would.
        merged_notes = (
            {} if annotations_patch is None else merge_patch(current.annotations, annotations_patch)
        )
        annotations = wire.validate(Annotations, {"annotations": merged_notes})
        # The same key again is no change: key_updated_at must move only when the key does.
        key_hash = (
            None
            if key is None or self.store.verify(current.api_user, key)
            else hash_key(key, self.store.scrypt_n)
        )
        return Replacement(attributes, dict(annotations.annotations), key_hash)

    def delete_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        try:
            deleted = self.store.delete(api_user, _write_context(request, caller), wire.if_match(request))
        except (VersionMismatch, LeaseLost) as exc:
            raise _refused(exc) from None
        if not deleted:
            raise wire.not_found()
        return Response(status=204)

    # Leases and the operation log (contract 2.1)

    def put_lease(self, request: Request, caller: Caller, name: str) -> Response:
        """Acquire (201) a free or expired lease, or renew (200) the one `If-Match` names."""
        _require_admin(caller, "take leases")
        lease_request = wire.validate(LeaseBody, wire.json_object(request)).request()
        token = wire.lease_token(request, wire.lease_name(name))
        try:
            if token is None:
                lease = self.store.acquire_lease(name, lease_request)
                return json_response(lease.public(with_token=True), 201)
            lease = self.store.renew_lease(name, token, lease_request)
            return json_response(lease.public(with_token=True))
        except LeaseHeld as held:
            return json_response(held.lease.public(), 409)
        except NoLease:
            raise wire.lease_lost(
                "no current lease matches this token: it expired or was broken", 412
            ) from None

    def get_lease(self, request: Request, caller: Caller, name: str) -> Response:
        _require_reader(caller, "read leases")
        lease = self.store.get_lease(wire.lease_name(name))
        if lease is None:
            raise ApiError.one(404, "not_found", "no current lease by that name")
        return json_response(lease.public())

    def delete_lease(self, request: Request, caller: Caller, name: str) -> Response:
        """Release with the lease's token, or (`?force=true`, admin) break whatever lease is there."""
        wire.lease_name(name)
        if request.args.get("force") == "true":
            _require_admin(caller, "break leases")
            if self.store.force_release_lease(name, _write_context(request, caller)) is None:
                raise ApiError.one(404, "not_found", "no current lease by that name")
            return Response(status=204)
        token = wire.lease_token(request, name)
        if token is None:
            raise ApiError.one(428, "if_match_required", 'release needs If-Match: "<token>" (or ?force=true)')
        try:
            self.store.release_lease(name, token)
        except NoLease:
            raise wire.lease_lost("no lease matches this token: it expired or was broken", 412) from None
        return Response(status=204)

    def operations(self, request: Request, caller: Caller) -> Response:
        since = wire.since_arg(request)
        api_user = request.args.get("api_user")
        if api_user is not None and not 0 < len(api_user) <= 254:
            raise ApiError.one(400, "invalid_parameter", "must be an api_user", "api_user")
        limit = wire.int_arg(request, "limit", 100, 1, MAX_OPERATIONS)
        actor = None if caller.reads_all else caller.api_user  # own data: what it did itself
        return json_response({"operations": self.store.operations(since, api_user, limit, actor)})

    def relay_messages(self, request: Request, caller: Caller) -> Response:
        if not caller.admin:
            raise ApiError.one(403, "forbidden", "only admin API users may list relayed messages")
        return json_response({"messages": self.store.messages()})

    # Gateway reports (gateways.py): an admin, or the API user bound to that gateway (roles.py).

    def put_gateway(self, request: Request, caller: Caller, name: str) -> Response:
        if not valid_name(name):
            raise ApiError.one(400, "invalid_name", "1-100 of [A-Za-z0-9._-], starting alphanumeric", "name")
        if not caller.may_report(name):
            raise ApiError.one(
                403, "forbidden", "only an admin or the API user bound to this gateway may report for it"
            )
        return json_response(self.gateways.put(name, wire.validate(GatewayReport, wire.json_object(request))))

    def list_gateways(self, request: Request, caller: Caller) -> Response:
        if caller.reads_all:
            return json_response({"gateways": self.gateways.all()})
        own = self.gateways.all(only=caller.gateway) if caller.gateway is not None else []
        return json_response({"gateways": own})

    def _existing(self, api_user: str) -> StoredUser:
        user = self.store.get(api_user)
        if user is None:
            raise wire.not_found()
        return user


def _user_response(
    user: StoredUser, status: int = 200, headers: dict[str, str] | None = None, *, caller: Caller
) -> Response:
    body = visible(caller, user.public())
    return json_response(body, status, {**(headers or {}), "ETag": f'"{user.version}"'})


def _write_context(request: Request, caller: Caller) -> WriteContext:
    return WriteContext(
        actor_api_user=caller.api_user,
        actor=wire.header(request, "X-Reconciler-Actor"),
        commit=wire.header(request, "X-Reconciler-Commit"),
        run=wire.header(request, "X-Reconciler-Run"),
        lease_token=request.headers.get("X-Lease-Token") or None,
    )


def _require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise ApiError.one(403, "forbidden", f"only admin API users may {what}")


def _require_reader(caller: Caller, what: str) -> None:
    if not caller.reads_all:
        raise ApiError.one(
            403, "forbidden", f"only admins and API users with operation authorization may {what}"
        )


def _refused(exc: Exception) -> ApiError:
    if isinstance(exc, VersionMismatch):
        return ApiError.one(412, "version_mismatch", "the API user changed since the version in If-Match")
    return wire.lease_lost()
