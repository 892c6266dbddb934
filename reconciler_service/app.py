"""The embedded service's HTTP API as a werkzeug WSGI application (the contract: openapi.json).

Request bodies are validated with the same `UserAttributes` model as the YAML, so the service and
`reconciler validate` reject the same things. Error messages never echo input values.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError
from pydantic_core import PydanticCustomError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from reconciler.model import Email, UserAttributes
from reconciler.secrets import KEY_RE, KEY_RULE
from reconciler_service.faults import Fault, FaultConfig
from reconciler_service.gateways import GatewayReport, Gateways, valid_name
from reconciler_service.store import DuplicateUser, Replacement, Store, StoredUser, UnknownUser, hash_key

log = logging.getLogger("reconciler_service")

BASE = "/api/v2"
MAX_ROWS = 100
MAX_BODY = 256 * 1024
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
        try:
            self._inject(request, endpoint, args.get("api_user"))
            caller = self._authenticate(request)
            response = getattr(self, endpoint)(request, caller, **args)
        except ApiError as exc:
            response = exc.response()
        except HTTPException as exc:
            # werkzeug raises these while reading the body (413 over MAX_BODY, 400 on a bad
            # encoding): answer them in the contract's error shape, not as an HTML 500.
            response = _http_error(exc).response()
        self._maybe_drop(request)
        return response  # type: ignore[no-any-return]

    # Faults

    def _inject(self, request: Request, endpoint: str, api_user: str | None) -> None:
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
        user = self.store.verify(auth.username, auth.password)
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
        return json_response(self._existing(api_user).public())

    def create_user(self, request: Request, caller: Caller) -> Response:
        body = _validate(CreateBody, _json_object(request))
        attributes = body.model_dump(mode="json", include=set(UserAttributes.model_fields))
        try:
            user = self.store.create(body.api_user, attributes, body.api_key, dict(body.annotations))
        except DuplicateUser:
            raise ApiError.one(
                409, "duplicate", "an API user with this name already exists", "api_user"
            ) from None
        return json_response(user.public(), 201, {"Location": f"{BASE}/api_users/{user.api_user}"})

    def update_user(self, request: Request, caller: Caller, api_user: str) -> Response:
        patch = _json_object(request)
        key = _validate(KeyBody, {"api_key": patch.pop("api_key")}).api_key if "api_key" in patch else None
        annotations_patch = patch.pop("annotations", {})
        if "api_user" in patch and str(patch.pop("api_user")).lower() != api_user.lower():
            raise ApiError.one(400, "immutable", "api_user cannot be changed", "api_user")
        if self.faults.ignores_writes_for(api_user):
            return json_response(self._existing(api_user).public())
        try:
            user = self.store.update(
                api_user, lambda cur: self._replacement(cur, patch, annotations_patch, key)
            )
        except UnknownUser:
            raise _not_found() from None
        return json_response(user.public())

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
        if not self.store.delete(api_user):
            raise _not_found()
        return Response(status=204)

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
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError.one(400, "invalid_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError.one(400, "invalid_json", "the body must be a JSON object")
    return data


def _body_api_user(request: Request) -> str | None:
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("api_user") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError.one(400, "invalid_parameter", f"must be an integer from {low} to {high}", name)
    return int(raw)


def _err(code: str, message: str, field: str | None = None) -> dict[str, str | None]:
    return {"code": code, "field": field, "message": message}


def _http_error(exc: HTTPException) -> ApiError:
    return ApiError.one(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.name)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, [_err("unauthorized", message)], {"WWW-Authenticate": 'Basic realm="reconciler"'})


def _not_found() -> ApiError:
    return ApiError.one(404, "not_found", "no API user by that name")
