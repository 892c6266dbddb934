"""The pinned schema of an API user, as Pydantic v2 models.

`UserSpec` is what people write in `users/<api_user>.yaml` (strict: no coercion, unknown keys are
errors). `UserAttributes` holds the settings shared with the service, which validates its request
bodies with the same model so that the YAML and the API reject the same things. `LiveUser` is what
the service returns: tolerant, because the service may add fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Deliberately narrower than RFC 5322: these strings end up in file names, Postfix maps and
# passwd-file lines, where whitespace, colons and quotes would be dangerous.
_LOCAL = r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
EMAIL_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
SENDER_RE = re.compile(rf"^(?:{_LOCAL})?@{_DOMAIN}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The service's key rule, made strict (docs/contract.md); `reconciler.secrets` applies it to resolved keys.
KEY_RE = re.compile(r"^(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{8,128}$")
KEY_RULE = "8-128 characters of A-Z, a-z, 0-9 with at least one letter and one digit"
MAX_EMAIL = 254
MAX_DESCRIPTION = 200
# IANA names are ASCII words joined by slashes (the longest is 32 characters). Checking the shape
# first keeps "../../etc/passwd", NUL bytes and tzdata's directories ("Europe") away from the
# file lookups zoneinfo does, which raise for them instead of saying "unknown".
MAX_TIMEZONE = 64
TIMEZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")
DEFAULT_TIMEZONE = "Asia/Tokyo"

Role = Literal["admin", "normal"]


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


def looks_like_key(value: str) -> bool:
    """True for a string that passes the key rule AND mixes upper- and lower-case letters: what a
    generated key looks like, and what an environment variable name (BILLING_API_KEY) does not."""
    return bool(KEY_RE.fullmatch(value)) and value != value.upper() and value != value.lower()


def _check_env_name(value: str) -> str:
    # Someone pasted the key where its variable's name belongs; the message must not repeat it,
    # and neither may a later "environment variable ... is not set".
    if looks_like_key(value):
        raise PydanticCustomError(
            "key_in_from_env", "from_env must name an environment variable; this looks like a key itself"
        )
    return value


def _check_path(value: str) -> str:
    # A NUL would make open() raise instead of saying "cannot read"; a line break is never a path.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PydanticCustomError("path", "must be a file path without control characters (NUL, line breaks)")
    return value


def _check_no_nul(value: str) -> str:
    if "\0" in value:
        raise PydanticCustomError(
            "age", "must be the armored text from `reconciler secret encrypt` (it has a NUL)"
        )
    return value


def _check_role(value: Any) -> Role:
    # Validated by hand, not as `Role | None`: a union would report each member's error, located
    # below the field. `role:` with no value is refused like any other wrong value.
    if value in {"admin", "normal"}:
        return "admin" if value == "admin" else "normal"
    raise PydanticCustomError(
        "literal_error", "Input should be 'admin' or 'normal'", {"expected": "'admin' or 'normal'"}
    )


def _no_default(schema: dict[str, Any]) -> None:
    # "default": null would tell editors null is a value; leaving role out is what it means.
    schema.pop("default", None)


def _refuse_literal_key(value: Any) -> Any:
    # The message must not echo the value: it is probably a real key.
    if isinstance(value, str | int | float):
        raise PydanticCustomError(
            "literal_key",
            "a literal key is not allowed here; use {from_env: NAME}, {from_file: PATH} or "
            "{age: ...} (from `reconciler secret encrypt`)",
        )
    return value


# The JSON Schema hints (pattern, maxLength) let editors flag mistakes as people type; the
# validators remain the authority and give the messages.
OptionalRole = Annotated[
    Role | None,
    PlainValidator(_check_role),
    WithJsonSchema({"enum": ["admin", "normal"], "type": "string"}),
]
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

_STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True)


class KeyRef(BaseModel):
    """Where the key lives: an environment variable, a file, or age-encrypted. Never the key itself."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "oneOf": [{"required": ["from_env"]}, {"required": ["from_file"]}, {"required": ["age"]}]
        },
    )

    from_env: (
        Annotated[
            StrictStr, Field(pattern=ENV_NAME_RE.pattern, max_length=128), AfterValidator(_check_env_name)
        ]
        | None
    ) = None
    """Name of the environment variable that holds the key (e.g. BILLING_API_KEY)."""
    from_file: (
        Annotated[StrictStr, Field(min_length=1, max_length=4096), AfterValidator(_check_path)] | None
    ) = None
    """File that holds the key; a relative path starts at the directory of this YAML file."""
    age: Annotated[StrictStr, Field(min_length=1, max_length=16384), AfterValidator(_check_no_nul)] | None = (
        None
    )
    """The key encrypted with age (armored), as printed by `reconciler secret encrypt`; decrypted
    with the identity in RECONCILER_AGE_IDENTITY or RECONCILER_AGE_IDENTITY_FILE."""

    @model_validator(mode="after")
    def _exactly_one(self) -> KeyRef:
        if sum(v is not None for v in (self.from_env, self.from_file, self.age)) != 1:
            raise PydanticCustomError("key_ref", "give exactly one of from_env, from_file or age")
        return self

    @property
    def kind(self) -> str:
        """The field that holds the reference: from_env, from_file or age."""
        return (
            "from_env" if self.from_env is not None else "from_file" if self.from_file is not None else "age"
        )

    def describe(self) -> str:
        if self.from_env is not None:
            return f"env {self.from_env}"
        return f"file {self.from_file}" if self.from_file is not None else "age ciphertext"


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

    role: Role
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


class UserSpec(UserAttributes):
    """One file in users/: the declared state of one API user (pinned schema: README.md, "A user file")."""

    # Optional here, required by the service (UserAttributes): a backend that stores role needs it
    # declared (reconciler.desired.required_fields), one that stores none (mailgun) refuses it.
    role: OptionalRole = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment]
    """admin or normal (console: Authorization); required unless the backend stores no role (mailgun)."""

    api_user: Email
    """The API user's name, an email address; must equal this file's name without .yaml."""
    api_key: Annotated[KeyRef, BeforeValidator(_refuse_literal_key)]
    """Where the key lives ({from_env: NAME}, {from_file: PATH} or {age: ...}); never the key itself."""

    def senders(self) -> tuple[str, ...]:
        """Envelope senders this login may use; the api_user itself unless declared."""
        return effective_senders(self.api_user, self.smtp_senders)


class LiveAccess(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    http_api: bool = False
    smtp: bool = False
    own_data_only: bool = False


class LiveUser(BaseModel):
    """An API user as the service returns it. Tolerant: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    api_user: str
    role: str
    operation: bool = False
    access: LiveAccess = LiveAccess()
    timezone: str = DEFAULT_TIMEZONE
    locked: bool = False
    smtp_senders: tuple[str, ...] | None = None
    description: str | None = None
    key_updated_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    version: str | None = None  # contract 2.1: opaque, changes on every write (If-Match)

    def senders(self) -> tuple[str, ...]:
        return effective_senders(self.api_user, self.smtp_senders)


class Lease(BaseModel):
    """A lease on the service (contract 2.1). `token` only in the holder's own answers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    holder: str
    host: str
    pid: int
    command: str
    acquired_at: datetime
    expires_at: datetime
    token: SecretStr | None = None  # it fences writes: never printed
    process_started: str = ""  # the holder's process identity (reconciler.run.liveness); "" from older runs

    def describe(self) -> str:
        since = self.acquired_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.holder} on {self.host} (pid {self.pid}, {self.command}, since {since})"


class Operation(BaseModel):
    """One entry of the service's operation log (contract 2.1)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    at: datetime
    actor_api_user: str | None = None
    actor: str | None = None
    commit: str | None = None
    run: str | None = None
    source: str
    action: str
    api_user: str | None = None
    fields: tuple[str, ...] = ()


def effective_senders(api_user: str, declared: tuple[str, ...] | None) -> tuple[str, ...]:
    return declared if declared else (api_user,)


SCHEMA_ID = "urn:reconciler:schema:user:v1"


def user_json_schema() -> dict[str, Any]:
    """The JSON Schema of a users/<api_user>.yaml file, for editors (yaml-language-server) and CI."""
    schema = UserSpec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "API user",
        "description": "One file in users/: the declared state of one API user of the email service.",
    }


# Field paths people see in plans, in the order they appear in a user file.
COMPARED_FIELDS: tuple[str, ...] = (
    "role",
    "operation",
    "access.http_api",
    "access.smtp",
    "access.own_data_only",
    "timezone",
    "locked",
    "smtp_senders",
    "description",
)
