"""The embedded service's HTTP API as a werkzeug WSGI application (the contract: openapi.json).

Request bodies are validated with the same `UserAttributes` model as the YAML, so the service and
`reconciler validate` reject the same things. Error messages never echo input values.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError
from pydantic_core import PydanticCustomError
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.http import parse_etags
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler.model import Email, UserAttributes
from reconciler.secrets import KEY_RE, KEY_RULE
from reconciler_service.faults import Fault, FaultConfig, drops_lease_put
from reconciler_service.gateways import GatewayReport, Gateways, valid_name
from reconciler_service.store import (
    Busy,
    DuplicateUser,
    LeaseHeld,
    LeaseLost,
    LeaseRequest,
    NoLease,
    Replacement,
    Store,
    StoredUser,
    UnknownUser,
    VersionMismatch,
    WriteContext,
    hash_key,
    stamp,
)

log = logging.getLogger("reconciler_service")

BASE = "/api/v2"
MAX_ROWS = 100
MAX_BODY = 256 * 1024
MAX_JSON_DEPTH = 8  # a user body nests two levels (access.smtp); room for growth, none for abuse
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
AnnotationKey = Annotated[StrictStr, Field(min_length=1, max_length=253)]
AnnotationValue = Annotated[StrictStr, Field(max_length=4096)]
M = TypeVar("M", bound=BaseModel)
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


def _check_api_key(value: str) -> str:
    if not KEY_RE.match(value):
        raise PydanticCustomError("api_key", f"must be {KEY_RULE}")
    return value


ApiKeyText = Annotated[StrictStr, AfterValidator(_check_api_key)]


class CreateBody(UserAttributes):
    """POST body: the shared attributes plus identity, key and annotations."""

    api_user: Email
    api_key: ApiKeyText
    annotations: dict[AnnotationKey, AnnotationValue] = Field(default_factory=dict, max_length=64)


class KeyBody(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    api_key: ApiKeyText


class Annotations(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    annotations: dict[AnnotationKey, AnnotationValue] = Field(default_factory=dict, max_length=64)


class LeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    holder: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    host: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    pid: Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]
    command: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    ttl_seconds: Annotated[int, Field(ge=1, le=86400, strict=True)]
    process_started: Annotated[StrictStr, Field(max_length=200)] = ""

    def request(self) -> LeaseRequest:
        return LeaseRequest(
            self.holder, self.host, self.pid, self.command, self.ttl_seconds, self.process_started
        )


SHARED_STATE_ENDPOINTS = frozenset({"put_lease", "get_lease", "delete_lease", "operations"})
LEASE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_OPERATIONS = 1000
MAX_HEADER = 200  # characters kept of an X-Reconciler-* header


class ApiError(Exception):
    """An error answer of the contract: `{"errors": [{"code", "field", "message"}]}`."""

    def __init__(
        self, status: int, errors: list[dict[str, str | None]], headers: dict[str, str] | None = None
    ):
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def one(cls, status: int, code: str, message: str, field: str | None = None) -> ApiError:
        return cls(status, [{"code": code, "field": field, "message": message}])

    @classmethod
    def from_validation(cls, exc: ValidationError) -> ApiError:
        errors: list[dict[str, str | None]] = [
            {
                "code": err["type"],
                "field": ".".join(str(p) for p in err["loc"]) or None,
                "message": err["msg"],
            }
            for err in exc.errors(include_input=False, include_url=False)
        ]
        return cls(400, errors)

    def response(self) -> Response:
        return json_response({"errors": self.errors}, self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@dataclass(frozen=True)
class Caller:
    api_user: str
    admin: bool


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
            return _http_error(exc).response()
        if endpoint == "openapi":
            return Response(self.openapi, content_type="application/json")
        if self.faults.no_shared_state and endpoint in SHARED_STATE_ENDPOINTS:
            return _http_error(NotFound()).response()
        try:
            self._inject(request, endpoint, args.get("api_user"), lease=args.get("name"))
            caller = self._authenticate(request)
            response = getattr(self, endpoint)(request, caller, **args)
        except ApiError as exc:
            response = exc.response()
        except HTTPException as exc:
            # werkzeug raises these while reading the body (413 over MAX_BODY, 400 on a bad
            # encoding): answer them in the contract's error shape, not as an HTML 500.
            response = _http_error(exc).response()
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
            raise ApiError(429, [_err("throttled", "too many requests")], {"Retry-After": retry_after})
        if fault is Fault.UNAVAILABLE:
            raise ApiError.one(503, "unavailable", "injected fault: service unavailable")
        if request.method in WRITE_METHODS and self.faults.drops_write_for(
            api_user or _body_api_user(request)
        ):
            request.environ["reconciler.fault"] = Fault.DROP
        if endpoint == "put_lease" and drops_lease_put(self.faults, lease):
            request.environ["reconciler.fault"] = Fault.DROP
        if fault is Fault.FAIL or (
            request.method in WRITE_METHODS
            and self.faults.fails_writes_for(api_user or _body_api_user(request))
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
            raise _unauthorized("credentials required (HTTP Basic)")
        try:
            user = self.store.authenticate(auth.username, auth.password)
        except Busy:
            raise ApiError(
                503, [_err("busy", "too many logins at once; retry shortly")], {"Retry-After": "1"}
            ) from None
        if user is None:
            raise _unauthorized("bad credentials")
        if user.attributes.get("locked"):
            raise _unauthorized("this API user is locked")
        if not user.attributes.get("access", {}).get("http_api"):
            raise _unauthorized("this API user has no HTTP API access")
        caller = Caller(user.api_user, user.attributes.get("role") == "admin")
        if request.method in WRITE_METHODS and not caller.admin:
            raise ApiError.one(403, "forbidden", "only admin API users may change API users")
        return caller

    # Endpoints

    def list_users(self, request: Request, caller: Caller) -> Response:
        page = _int_arg(request, "p", 0, 0, 10**9)
        rows = _int_arg(request, "r", MAX_ROWS, 1, MAX_ROWS)
        users, total = self.store.page_json(page * rows, rows)
        body = '{"api_users": [' + ", ".join(users) + f'], "total": {total}}}'
        return Response(body, content_type="application/json")

    def get_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        return _user_response(self._existing(api_user))

    def create_user(self, request: Request, caller: Caller) -> Response:
        body = _validate(CreateBody, _json_object(request))
        attributes = body.model_dump(mode="json", include=set(UserAttributes.model_fields))
        context = _write_context(request, caller)
        try:
            user = self.store.create(body.api_user, attributes, body.api_key, dict(body.annotations), context)
        except DuplicateUser:
            raise ApiError.one(
                409, "duplicate", "an API user with this name already exists", "api_user"
            ) from None
        except LeaseLost:
            raise _lease_lost() from None
        return _user_response(user, 201, {"Location": f"{BASE}/api_users/{user.api_user}"})

    def update_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        patch = _json_object(request)
        key = _validate(KeyBody, {"api_key": patch.pop("api_key")}).api_key if "api_key" in patch else None
        annotations_patch = patch.pop("annotations", {})
        if "api_user" in patch and str(patch.pop("api_user")).lower() != api_user.lower():
            raise ApiError.one(400, "immutable", "api_user cannot be changed", "api_user")
        if self.faults.ignores_writes_for(api_user):
            return _user_response(self._existing(api_user))
        try:
            user = self.store.update(
                api_user,
                lambda cur: self._replacement(cur, patch, annotations_patch, key),
                _write_context(request, caller),
                _if_match(request),
            )
        except UnknownUser:
            raise _not_found() from None
        except (VersionMismatch, LeaseLost) as exc:
            raise _refused(exc) from None
        return _user_response(user)

    def _replacement(
        self, current: StoredUser, patch: dict[str, Any], annotations_patch: Any, key: str | None
    ) -> Replacement:
        merged = merge_patch(current.attributes, patch)
        attributes = _validate(UserAttributes, merged).model_dump(mode="json")
        # A null `annotations` removes them all, as a merge patch of the whole user would.
        merged_notes = (
            {} if annotations_patch is None else merge_patch(current.annotations, annotations_patch)
        )
        annotations = _validate(Annotations, {"annotations": merged_notes})
        # The same key again is no change: key_updated_at must move only when the key does.
        key_hash = (
            None
            if key is None or self.store.verify(current.api_user, key)
            else hash_key(key, self.store.scrypt_n)
        )
        return Replacement(attributes, dict(annotations.annotations), key_hash)

    def delete_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        try:
            deleted = self.store.delete(api_user, _write_context(request, caller), _if_match(request))
        except (VersionMismatch, LeaseLost) as exc:
            raise _refused(exc) from None
        if not deleted:
            raise _not_found()
        return Response(status=204)

    # Leases and the operation log (contract 2.1)

    def put_lease(self, request: Request, caller: Caller, name: str) -> Response:
        """Acquire (201) a free or expired lease, or renew (200) the one `If-Match` names."""
        _require_admin(caller, "take leases")
        lease_request = _validate(LeaseBody, _json_object(request)).request()
        token = _lease_token(request, _lease_name(name))
        try:
            if token is None:
                lease = self.store.acquire_lease(name, lease_request)
                return json_response(lease.public(with_token=True), 201)
            lease = self.store.renew_lease(name, token, lease_request)
            return json_response(lease.public(with_token=True))
        except LeaseHeld as held:
            return json_response(held.lease.public(), 409)
        except NoLease:
            raise _lease_lost("no current lease matches this token: it expired or was broken", 412) from None

    def get_lease(self, request: Request, caller: Caller, name: str) -> Response:
        lease = self.store.get_lease(_lease_name(name))
        if lease is None:
            raise ApiError.one(404, "not_found", "no current lease by that name")
        return json_response(lease.public())

    def delete_lease(self, request: Request, caller: Caller, name: str) -> Response:
        """Release with the lease's token, or (`?force=true`, admin) break whatever lease is there."""
        _lease_name(name)
        if request.args.get("force") == "true":
            _require_admin(caller, "break leases")
            if self.store.force_release_lease(name, _write_context(request, caller)) is None:
                raise ApiError.one(404, "not_found", "no current lease by that name")
            return Response(status=204)
        token = _lease_token(request, name)
        if token is None:
            raise ApiError.one(428, "if_match_required", 'release needs If-Match: "<token>" (or ?force=true)')
        try:
            self.store.release_lease(name, token)
        except NoLease:
            raise _lease_lost("no lease matches this token: it expired or was broken", 412) from None
        return Response(status=204)

    def operations(self, request: Request, caller: Caller) -> Response:
        since = _since_arg(request)
        api_user = request.args.get("api_user")
        if api_user is not None and not 0 < len(api_user) <= 254:
            raise ApiError.one(400, "invalid_parameter", "must be an api_user", "api_user")
        limit = _int_arg(request, "limit", 100, 1, MAX_OPERATIONS)
        return json_response({"operations": self.store.operations(since, api_user, limit)})

    def relay_messages(self, request: Request, caller: Caller) -> Response:
        if not caller.admin:
            raise ApiError.one(403, "forbidden", "only admin API users may list relayed messages")
        return json_response({"messages": self.store.messages()})

    # Gateway reports (reconciler_service/gateways.py): any caller with HTTP-API access.

    def put_gateway(self, request: Request, caller: Caller, name: str) -> Response:
        if not valid_name(name):
            raise ApiError.one(400, "invalid_name", "1-100 of [A-Za-z0-9._-], starting alphanumeric", "name")
        return json_response(self.gateways.put(name, _validate(GatewayReport, _json_object(request))))

    def list_gateways(self, request: Request, caller: Caller) -> Response:
        return json_response({"gateways": self.gateways.all()})

    def _existing(self, api_user: str) -> StoredUser:
        user = self.store.get(api_user)
        if user is None:
            raise _not_found()
        return user


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def _validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None


def _json_object(request: Request) -> dict[str, Any]:
    data = _parse_json(request.get_data(cache=True) or b"null")
    if not isinstance(data, dict):
        raise ApiError.one(400, "invalid_json", "the body must be a JSON object")
    if _too_deep(data):
        raise ApiError.one(400, "too_deep", f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
    return data


def _parse_json(raw: bytes) -> Any:
    """The body as JSON, or a 400 that says why without echoing it. json refuses integers of more
    than 4,300 digits (ValueError) and recurses once per nesting level (RecursionError)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError.one(400, "invalid_json", f"the body is not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise ApiError.one(400, "invalid_json", "the body is not UTF-8") from None
    except ValueError:
        raise ApiError.one(400, "invalid_json", "a number in the body has too many digits") from None
    except RecursionError:
        raise ApiError.one(
            400, "too_deep", f"the body is nested more than {MAX_JSON_DEPTH} levels deep"
        ) from None


def _too_deep(data: Any) -> bool:
    """True when `data` nests deeper than MAX_JSON_DEPTH (checked without recursion, so that the
    merge patch and the models, which recurse, only ever see shallow data)."""
    level: list[Any] = [data]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for value in level
            if isinstance(value, dict | list)
            for child in (value.values() if isinstance(value, dict) else value)
        ]
        if not level:
            return False
    return any(isinstance(value, dict | list) for value in level)


def _body_api_user(request: Request) -> str | None:
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, RecursionError):
        return None
    value = data.get("api_user") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() accepts "²", which int() refuses; the length keeps int() cheap.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not low <= int(raw) <= high:
        raise ApiError.one(400, "invalid_parameter", f"must be an integer from {low} to {high}", name)
    return int(raw)


def _user_response(user: StoredUser, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(user.public(), status, {**(headers or {}), "ETag": f'"{user.version}"'})


def _if_match(request: Request) -> Callable[[str], bool] | None:
    """The condition of `If-Match` (strong comparison), or None for an unconditional write. A
    malformed header matches nothing: a client that meant a condition must not get a blind write."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    etags = parse_etags(raw)
    return lambda version: bool(etags.star_tag or (version and etags.contains(version)))


def _lease_token(request: Request, name: str) -> str | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    # An empty quoted tag ("") parses as None: no token, and nothing to sort against a string.
    tokens = sorted(tag for tag in parse_etags(raw).as_set() if tag)
    if len(tokens) != 1:
        raise _lease_lost(f'If-Match must name the token of lease {name} as "<token>"', 412)
    return tokens[0]


def _lease_name(name: str) -> str:
    if not LEASE_NAME.fullmatch(name):
        raise ApiError.one(400, "invalid_parameter", "must be 1-64 of A-Z a-z 0-9 . _ -", "name")
    return name


def _write_context(request: Request, caller: Caller) -> WriteContext:
    return WriteContext(
        actor_api_user=caller.api_user,
        actor=_header(request, "X-Reconciler-Actor"),
        commit=_header(request, "X-Reconciler-Commit"),
        run=_header(request, "X-Reconciler-Run"),
        lease_token=request.headers.get("X-Lease-Token") or None,
    )


def _header(request: Request, name: str) -> str | None:
    value = "".join(ch for ch in request.headers.get(name, "") if ch.isprintable()).strip()
    return value[:MAX_HEADER] or None


def _since_arg(request: Request) -> str | None:
    raw = request.args.get("since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError.one(400, "invalid_parameter", "must be an RFC 3339 time with an offset", "since")
    return stamp(moment)


def _require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise ApiError.one(403, "forbidden", f"only admin API users may {what}")


def _refused(exc: Exception) -> ApiError:
    if isinstance(exc, VersionMismatch):
        return ApiError.one(412, "version_mismatch", "the API user changed since the version in If-Match")
    return _lease_lost()


def _lease_lost(
    message: str = "the lease this write was made under is no longer current", status: int = 409
) -> ApiError:
    """409 for a fenced write, 412 for a renewal or release whose If-Match token is not current."""
    return ApiError.one(status, "lease_lost", message)


def _err(code: str, message: str, field: str | None = None) -> dict[str, str | None]:
    return {"code": code, "field": field, "message": message}


def _http_error(exc: HTTPException) -> ApiError:
    return ApiError.one(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.name)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, [_err("unauthorized", message)], {"WWW-Authenticate": 'Basic realm="reconciler"'})


def _not_found() -> ApiError:
    return ApiError.one(404, "not_found", "no API user by that name")
