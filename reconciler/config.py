"""Settings: an optional `reconciler.yaml` beside `users/`, overridden by `RECONCILER_*` variables.

With nothing configured, everything points at the embedded service's defaults, so `make demo` and
the tests need no configuration file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, ValidationError

from reconciler.errors import ConfigError, Problem, ValidationFailed
from reconciler.model import KeyRef

ENV_PREFIX = "RECONCILER_"
CONFIG_FILE = "reconciler.yaml"
DEFAULT_API_URL = "http://127.0.0.1:8725/api/v2"

Percent = Annotated[float, Field(ge=0, le=100)]


class Settings(BaseModel):
    """Every setting, with its default. Field `x` is `RECONCILER_X` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # The service
    api_url: str = DEFAULT_API_URL
    api_user: str | None = None
    api_key: SecretStr | None = None  # only from RECONCILER_API_KEY, never from a file in git
    api_key_ref: KeyRef | None = None  # reconciler.yaml: where to read the key instead
    allow_insecure_http: StrictBool = False  # plain http to a non-loopback host
    ca_bundle: str | None = None
    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    read_timeout: Annotated[float, Field(gt=0)] = 30.0
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    # Keyed fingerprints of keys; when unset it is derived from the reconciler's own API key.
    fingerprint_secret: SecretStr | None = None

    # Safety guards
    max_deletes: Annotated[int, Field(ge=0)] = 3
    max_change_percent: Percent = 25.0

    # Local state: lock and audit log
    state_dir: str = ".reconciler"

    # The mail server
    mail_dir: str | None = None
    relay_host: str = "127.0.0.1"
    relay_port: Annotated[int, Field(ge=1, le=65535)] = 2525
    hash_scheme: Literal["ARGON2ID", "BLF-CRYPT"] = "ARGON2ID"
    postfix_config_dir: str | None = None
    dovecot_config: str | None = None
    postfix_command: str = "postfix"
    postconf_command: str = "postconf"
    doveconf_command: str = "doveconf"
    doveadm_command: str = "doveadm"
    mail_file_group: str = "dovecot"
    submission_port: Annotated[int, Field(ge=1, le=65535)] | None = None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and name != "api_key_ref":
            values[name] = _coerce(name, raw)
    return values


def _coerce(name: str, raw: str) -> Any:
    annotation = Settings.model_fields[name].annotation
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered not in {"1", "0", "true", "false", "yes", "no"}:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be true or false")
        return lowered in {"1", "true", "yes"}
    return raw


def load_settings(users_dir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `reconciler.yaml` beside `users_dir`, then the environment on top."""
    environ = os.environ if env is None else env
    config_path = users_dir.parent / CONFIG_FILE
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if config_path.is_file():
        values, lines = _read_config_file(config_path)
        if "api_key" in values:
            raise ValidationFailed(
                [Problem(str(config_path), "a literal key is not allowed; use api_key_ref", lines.get("api_key"))]
            )
    values.update(_from_env(environ))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [
            Problem(
                str(config_path) if str(err["loc"][0]) in lines else "environment",
                err["msg"],
                lines.get(str(err["loc"][0])),
                field=".".join(str(p) for p in err["loc"]),
            )
            for err in exc.errors()
        ]
        raise ValidationFailed(problems) from None


def _read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    from reconciler.desired import load_mapping_with_lines

    return load_mapping_with_lines(path)
