"""The contract's wire format on the service side: request bodies and parameters in (validated,
never echoed back in an error), errors out in the contract's shape `{"errors": [{"code", "field",
"message"}]}` (docs/contract.md, "Errors"). app.py routes and decides; this module only parses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_etags
from werkzeug.wrappers import Request, Response

from reconciler_service.clock import stamp
from reconciler_service.leases import LeaseRequest
from reconciler_service.model import ApiKeyText, Email, UserAttributes

MAX_JSON_DEPTH = 8  # a user body nests two levels (access.smtp); room for growth, none for abuse
MAX_HEADER = 200  # characters kept of an X-Reconciler-* header
LEASE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
AnnotationKey = Annotated[StrictStr, Field(min_length=1, max_length=253)]
AnnotationValue = Annotated[StrictStr, Field(max_length=4096)]
M = TypeVar("M", bound=BaseModel)


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


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None


def json_object(request: Request) -> dict[str, Any]:
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


def body_api_user(request: Request) -> str | None:
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, RecursionError):
        return None
    value = data.get("api_user") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() accepts "²", which int() refuses; the length keeps int() cheap.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not low <= int(raw) <= high:
        raise ApiError.one(400, "invalid_parameter", f"must be an integer from {low} to {high}", name)
    return int(raw)


def if_match(request: Request) -> Callable[[str], bool] | None:
    """The condition of `If-Match` (strong comparison), or None for an unconditional write. A
    malformed header matches nothing: a client that meant a condition must not get a blind write."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    etags = parse_etags(raw)
    return lambda version: bool(etags.star_tag or (version and etags.contains(version)))


def lease_token(request: Request, name: str) -> str | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    # An empty quoted tag ("") parses as None: no token, and nothing to sort against a string.
    tokens = sorted(tag for tag in parse_etags(raw).as_set() if tag)
    if len(tokens) != 1:
        raise lease_lost(f'If-Match must name the token of lease {name} as "<token>"', 412)
    return tokens[0]


def lease_name(name: str) -> str:
    if not LEASE_NAME.fullmatch(name):
        raise ApiError.one(400, "invalid_parameter", "must be 1-64 of A-Z a-z 0-9 . _ -", "name")
    return name


def header(request: Request, name: str) -> str | None:
    value = "".join(ch for ch in request.headers.get(name, "") if ch.isprintable()).strip()
    return value[:MAX_HEADER] or None


def since_arg(request: Request) -> str | None:
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


def lease_lost(
    message: str = "the lease this write was made under is no longer current", status: int = 409
) -> ApiError:
    """409 for a fenced write, 412 for a renewal or release whose If-Match token is not current."""
    return ApiError.one(status, "lease_lost", message)


def err(code: str, message: str, field: str | None = None) -> dict[str, str | None]:
    return {"code": code, "field": field, "message": message}


def http_error(exc: HTTPException) -> ApiError:
    return ApiError.one(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.name)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, [err("unauthorized", message)], {"WWW-Authenticate": 'Basic realm="reconciler"'})


def not_found() -> ApiError:
    return ApiError.one(404, "not_found", "no API user by that name")
