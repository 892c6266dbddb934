"""The API user's attributes as the service validates them (docs/contract.md, "The user object").

The service is its own distribution and never imports the tool, so it keeps its own copy of the
rules. They must stay the tool's rules exactly (a request the service accepts must be a file
`reconciler validate` accepts, and the other way round): tests/service/test_model_parity.py compares
the two models' JSON Schemas and runs both over the same inputs.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator
from pydantic_core import PydanticCustomError

# Narrower than RFC 5322 on purpose: these names end up in Postfix maps and passwd-file lines.
_LOCAL = r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
EMAIL_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
SENDER_RE = re.compile(rf"^(?:{_LOCAL})?@{_DOMAIN}$")
KEY_RE = re.compile(r"^(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{8,128}$")
KEY_RULE = "8-128 characters of A-Z, a-z, 0-9 with at least one letter and one digit"
MAX_EMAIL = 254
MAX_DESCRIPTION = 200
MAX_TIMEZONE = 64
# The shape is checked before zoneinfo looks a name up as a file ("../../etc/passwd", "Europe").
TIMEZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")
DEFAULT_TIMEZONE = "Asia/Tokyo"


def _check_email(value: str) -> str:
    if len(value) > MAX_EMAIL or not EMAIL_RE.fullmatch(value):
        raise PydanticCustomError("email", "must be an email address like app@example.com")
    return value


def _check_sender(value: str) -> str:
    if len(value) > MAX_EMAIL or not SENDER_RE.fullmatch(value):
        raise PydanticCustomError(
            "sender", "must be an email address (app@example.com) or a whole domain (@example.com)"
        )
    return value


@lru_cache(maxsize=1024)
def _known_timezone(name: str) -> bool:
    if len(name) > MAX_TIMEZONE or not TIMEZONE_RE.fullmatch(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        return False
    return True


def _check_timezone(value: str) -> str:
    if not _known_timezone(value):
        raise PydanticCustomError("timezone", "must be an IANA time zone name like Asia/Tokyo or UTC")
    return value


def _check_description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise PydanticCustomError("description", "must be at most 200 characters")
    if any(ch in value for ch in "\r\n") or not value.isprintable():
        raise PydanticCustomError("description", "must be a single line of printable text")
    return value


def _check_api_key(value: str) -> str:
    if not KEY_RE.match(value):
        raise PydanticCustomError("api_key", f"must be {KEY_RULE}")
    return value


Email = Annotated[
    StrictStr,
    AfterValidator(_check_email),
    Field(json_schema_extra={"format": "email", "pattern": EMAIL_RE.pattern, "maxLength": MAX_EMAIL}),
]
Sender = Annotated[
    StrictStr,
    AfterValidator(_check_sender),
    Field(json_schema_extra={"pattern": SENDER_RE.pattern, "maxLength": MAX_EMAIL}),
]
Timezone = Annotated[
    StrictStr,
    AfterValidator(_check_timezone),
    Field(
        json_schema_extra={
            "examples": ["Asia/Tokyo", "UTC"],
            "pattern": TIMEZONE_RE.pattern,
            "maxLength": MAX_TIMEZONE,
        }
    ),
]
Description = Annotated[
    StrictStr,
    AfterValidator(_check_description),
    Field(json_schema_extra={"maxLength": MAX_DESCRIPTION, "pattern": "^[^\\r\\n]*$"}),
]
ApiKeyText = Annotated[StrictStr, AfterValidator(_check_api_key)]

_STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True)


class Access(BaseModel):
    """Console: Access Authorization."""

    model_config = _STRICT

    http_api: StrictBool = False
    """May use the HTTP API (console: HTTP API)."""
    smtp: StrictBool = False
    """May send through the SMTP relay; the mail gateway gets a login for it (console: SMTP)."""
    own_data_only: StrictBool = False
    """Only refer to this user's own sending data; requires http_api: true."""

    @model_validator(mode="after")
    def _own_data_needs_http(self) -> Access:
        if self.own_data_only and not self.http_api:
            raise PydanticCustomError("own_data_only", "own_data_only: true requires http_api: true")
        return self


class UserAttributes(BaseModel):
    """The settings of an API user that the service stores; shared by the YAML and the service."""

    model_config = _STRICT

    role: Literal["admin", "normal"]
    """admin or normal (console: Authorization)."""
    operation: StrictBool = False
    """May view and download data that includes email addresses (console: Operation Authorization)."""
    access: Access = Access()
    """What the user may use (console: Access Authorization)."""
    timezone: Timezone = DEFAULT_TIMEZONE
    """IANA time zone name, e.g. Asia/Tokyo or UTC."""
    locked: StrictBool = False
    """Lock the account: no HTTP API and no SMTP (console: Lock this account)."""
    smtp_senders: Annotated[tuple[Sender, ...], Field(min_length=1, max_length=100)] | None = None
    """Envelope senders this SMTP login may use (addresses or @domain); default [api_user]; needs smtp."""
    description: Description | None = None
    """One line of free text, at most 200 characters: what it is for and who owns it."""

    @model_validator(mode="after")
    def _senders_need_smtp(self) -> UserAttributes:
        if self.smtp_senders is not None:
            if not self.access.smtp:
                raise PydanticCustomError(
                    "smtp_senders", "smtp_senders is only allowed with access.smtp: true"
                )
            lowered = [s.lower() for s in self.smtp_senders]
            if len(set(lowered)) != len(lowered):
                raise PydanticCustomError("smtp_senders", "smtp_senders lists the same sender twice")
        return self
