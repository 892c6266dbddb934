"""Settings: an optional `reconciler.yaml` beside `users/`, overridden by `RECONCILER_*` variables.

With nothing configured, everything points at the embedded service's defaults, so `make demo` and
the tests need no configuration file.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from reconciler import yamlfile
from reconciler.desired import map_error
from reconciler.errors import ConfigError, Problem, SecretError, ValidationFailed
from reconciler.model import KEY_RE, KEY_RULE, KeyRef
from reconciler.secrets import resolve
from reconciler.yamlfile import YamlMapping

ENV_PREFIX = "RECONCILER_"
CONFIG_FILE = "reconciler.yaml"
DEFAULT_API_URL = "http://127.0.0.1:8725/api/v2"
ENVIRONMENT = "(environment)"  # the `file` of problems that come from RECONCILER_* variables
MAX_SETTING_LENGTH = 4096  # PATH_MAX: the longest a path setting can usefully be
_BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
# RECONCILER_* variables read elsewhere than Settings (reconciler.logs, the age identity, the
# embedded service's first admin, the read-only plan credential of the workflows, click completion).
OTHER_VARIABLES = frozenset(
    {
        "RECONCILER_AGE_IDENTITY",
        "RECONCILER_AGE_IDENTITY_FILE",
        "RECONCILER_LOG",
        "RECONCILER_DEBUG",
        "RECONCILER_ACTOR",
        "RECONCILER_SERVICE_ADMIN_KEY",
        "RECONCILER_READONLY_API_USER",
        "RECONCILER_READONLY_API_KEY",
    }
)
log = logging.getLogger(__name__)
_warned: set[str] = set()

Percent = Annotated[float, Field(ge=0, le=100)]
# Settings that name a file, a directory or a command on this machine: `~` is expanded in each.
PATH_SETTINGS = (
    "ca_bundle",
    "state_dir",
    "mail_dir",
    "templates_dir",
    "postfix_config_dir",
    "dovecot_config",
    "postfix_command",
    "postconf_command",
    "doveconf_command",
    "doveadm_command",
)


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
    # Retries are bounded by a deadline per change (docs/reliability.md "Retries"); `retries` is
    # an optional extra cap on the retries of one request (0: never retry), unset by default.
    change_deadline: Annotated[float, Field(gt=0, le=3600)] = 60.0
    retries: Annotated[int, Field(ge=0, le=20)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    # Keyed fingerprints of keys (reconciler/fpsecret.py): never derived from an API key. Only from
    # RECONCILER_FINGERPRINT_SECRET, or a file (default <state_dir>/fingerprint.secret beside users/).
    fingerprint_secret: SecretStr | None = None
    fingerprint_secret_file: str | None = None

    # Where `api_key_ref` was declared, for `service_api_key` (not settings: neither env nor YAML).
    _config_file: Path | None = PrivateAttr(default=None)
    _ref_line: int | None = PrivateAttr(default=None)
    _env: Mapping[str, str] | None = PrivateAttr(default=None)
    _resolved_key: SecretStr | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)  # the directory of users/ and reconciler.yaml

    # The backend (reconciler/backend/registry.py) and where state lives that the backend cannot keep
    backend: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")] = "http-v2"
    # A declared field the backend cannot store: refuse (file:line) or only note it in the plan.
    unsupported_fields: Literal["refuse", "note"] = "refuse"
    # local: the state directory; git: a ref in the users repository, updated by compare-and-swap push.
    state_store: Literal["local", "git"] = "local"
    # Both reach git's command line (reconciler/run/store.py): never a leading "-" (an option).
    state_ref: Annotated[str, Field(pattern=r"^refs/[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")] = (
        "refs/reconciler/state"
    )
    state_remote: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./~@][^\s]{0,1000}$")] = "origin"

    # Mailgun (reconciler/backend/mailgun/)
    mailgun_region: Literal["us", "eu"] = "us"
    mailgun_api_url: str | None = None  # overrides the region's base URL; http:// only to loopback
    mailgun_api_key_env: str = "MAILGUN_API_KEY"  # the variable holding the account key
    mailgun_api_key_file: str | None = None  # or a file holding it (/run/secrets/...); wins when set
    mailgun_domains: str | None = None  # comma-separated sending domains
    mailgun_lock_by_delete: StrictBool = False  # locked: true deletes the credential, unlock re-creates it
    mailgun_smtp_host: str | None = None  # the relay hop; default the region's host (MAILGUN_REGIONS)
    mailgun_smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587

    # Customers Mail Cloud console (reconciler/backend/cmc/)
    cmc_relay_host: str | None = None  # Standard, Pro <SUBDOMAIN> or sandbox relay (docs/cmc.md)
    cmc_relay_port: Annotated[int, Field(ge=1, le=65535)] = 587
    cmc_api_url: str = "https://api.smtps.jp/transaction/v2"  # the Transactional Email API
    cmc_server_composition: str | None = None
    cmc_probe_rate: Annotated[float, Field(gt=0, le=100)] = 2.0  # probes per second, at most
    # The audit log is read at most this often (its docs ask for at most once a day); 0 = every run.
    cmc_audit_interval_hours: Annotated[float, Field(ge=0, le=24 * 31)] = 24.0

    # Safety guards
    max_deletes: Annotated[int, Field(ge=0)] = 3
    max_change_percent: Percent = 25.0

    # Local state: lock and audit log
    state_dir: str = ".reconciler"
    # The service's lease: a run that dies holds it at most this long (it is renewed every third)
    lease_ttl: Annotated[int, Field(ge=3, le=86400)] = 60

    # The mail server
    mail_dir: str | None = None
    templates_dir: str | None = None  # Jinja templates of the mail files; unset = the packaged ones
    relay_host: str = "127.0.0.1"
    relay_port: Annotated[int, Field(ge=1, le=65535)] = 2525
    # SMTP AUTH to a relay that is not on loopback only after STARTTLS, unless this is set (a relay
    # reached over a network that is encrypted otherwise, e.g. a VPN; docs/mail.md "TLS").
    allow_insecure_relay: StrictBool = False
    hash_scheme: Literal["ARGON2ID", "BLF-CRYPT"] = "ARGON2ID"
    postfix_config_dir: str | None = None
    dovecot_config: str | None = None
    postfix_command: str = "postfix"
    postconf_command: str = "postconf"
    doveconf_command: str = "doveconf"
    doveadm_command: str = "doveadm"
    mail_file_group: str = "dovecot"
    # full: every check and reload runs, and what cannot run is an error (production). skip: leave out,
    # and name in one line, the steps this machine cannot run (make demo; reconciler/mail/checks.py).
    mail_checks: Literal["full", "skip"] = "full"
    submission_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    mail_command_timeout: Annotated[float, Field(gt=0)] = 60.0  # each postfix/doveadm/... command
    gateway_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")] | None = None

    @field_validator("*")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        # Paths, commands and names: a NUL would make the first open() or exec raise instead of
        # failing with a message, and no setting needs a line break or pages of text.
        if isinstance(value, str) and (len(value) > MAX_SETTING_LENGTH or not value.isprintable()):
            raise PydanticCustomError(
                "setting_text",
                f"must be one line of at most {MAX_SETTING_LENGTH} printable characters",
            )
        return value

    @field_validator(*PATH_SETTINGS)
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        # `~/mail` means the same here as in a shell, and as in a key's from_file.
        return os.path.expanduser(value) if value is not None and value.startswith("~") else value

    @field_validator("api_key")
    @classmethod
    def _valid_key(cls, value: SecretStr | None) -> SecretStr | None:
        # The service's rule; also keeps non-latin-1 text out of the HTTP Basic header. Never echoed.
        if value is not None and not KEY_RE.fullmatch(value.get_secret_value()):
            raise PydanticCustomError(
                "api_key", f"{env_name('api_key')} is not a valid key: it must be {KEY_RULE}"
            )
        return value


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem]]:
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name in Settings.model_fields:
        raw = env.get(env_name(name))
        if raw is None or name == "api_key_ref":
            continue
        try:
            values[name] = _coerce(name, raw)
        except ValueError as exc:
            problems.append(Problem(ENVIRONMENT, str(exc), field=env_name(name)))
    return values, problems


def _coerce(name: str, raw: str) -> Any:
    # Environment values are always strings; only booleans need a spelling rule of their own
    # (pydantic's lax parsing turns "5" into 5 for the number settings).
    if Settings.model_fields[name].annotation is bool:
        lowered = raw.strip().lower()
        if lowered not in _BOOLEAN_WORDS:
            raise ValueError("expected true or false (or 1/0, yes/no)")
        return _BOOLEAN_WORDS[lowered]
    return raw


def load_settings(users_dir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `reconciler.yaml` beside `users_dir`, then the environment on top. Every
    problem of the file and the environment is reported at once, located."""
    environ = os.environ if env is None else env
    _warn_unknown(environ)
    config_path = users_dir.parent / CONFIG_FILE
    doc = load_mapping(config_path) if config_path.is_file() else YamlMapping({})
    problems = _literal_key(str(config_path), doc)
    from_env, env_problems = _from_env(environ)
    problems += env_problems
    values = {**doc.data, **from_env}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems += [_locate(str(config_path), doc, from_env, err) for err in exc.errors()]
    if problems:
        raise ValidationFailed(sorted(problems, key=lambda p: (p.file, p.line or 0, p.field or "")))
    settings._base_dir = users_dir.parent
    if settings.api_key_ref is not None:
        # Resolved later, and only by commands that talk to the service (see service_api_key).
        settings._config_file = config_path
        ref_field = f"api_key_ref.{settings.api_key_ref.kind}"
        where = doc.position(ref_field, key=True) or doc.position("api_key_ref", key=True)
        settings._ref_line = where[0] if where else None
        settings._env = env
    return settings


def is_loopback_host(host: str) -> bool:
    """Only `localhost` and loopback addresses: any other name may resolve elsewhere tomorrow."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_dir(settings: Settings) -> Path:
    """Where relative local paths (state_dir, fingerprint_secret_file) start: the directory that
    holds users/ and reconciler.yaml; the current directory for settings not loaded from one."""
    return settings._base_dir if settings._base_dir is not None else Path()


def find_project_root(start: Path) -> Path | None:
    """The nearest directory, from `start` upwards, that holds reconciler.yaml or users/ (as git
    finds .git), so the commands work from users/ itself or any directory below the project."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file() or (directory / "users").is_dir():
            return directory
    return None


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning per RECONCILER_* variable nothing reads (a typo is otherwise silently ignored,
    while the same typo in reconciler.yaml is an error), with the setting it probably meant. A
    name ending in _KEY may be a user's key that a users/ file reads with from_env: never reported."""
    known = {env_name(name) for name in Settings.model_fields} | OTHER_VARIABLES
    warnings = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name.endswith("_KEY"):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else " (README.md, section Configuration, lists them)"
        warnings.append(f"unknown variable {name} is ignored{hint}")
    return warnings


def _warn_unknown(env: Mapping[str, str]) -> None:
    for warning in unknown_variables(env):
        if warning not in _warned:  # settings are loaded more than once by some commands
            _warned.add(warning)
            log.warning("%s", warning)


def service_api_key(settings: Settings) -> SecretStr | None:
    """The key the reconciler authenticates with: RECONCILER_API_KEY, else the key `api_key_ref`
    in reconciler.yaml points at (a relative from_file starts at reconciler.yaml's directory),
    resolved on first use so that `validate` never needs it. None when neither is set.
    Raises ConfigError naming reconciler.yaml and the line when the reference cannot be resolved."""
    if settings.api_key is not None:
        return settings.api_key
    ref = settings.api_key_ref
    if ref is None:
        return None
    if settings._resolved_key is None:
        config_file = settings._config_file or Path(CONFIG_FILE)
        try:
            key = resolve(ref, config_file.parent, settings._env)
        except SecretError as exc:
            where = f"{config_file}:{settings._ref_line}" if settings._ref_line else str(config_file)
            raise ConfigError(f"{where}: api_key_ref: {exc}") from None
        settings._resolved_key = SecretStr(key.reveal())
    return settings._resolved_key


# Secrets that a file in git must not hold; each with where it may come from instead.
_ENV_ONLY = {
    "api_key": "set RECONCILER_API_KEY or use api_key_ref",
    "fingerprint_secret": "set RECONCILER_FINGERPRINT_SECRET",
}


def _literal_key(file: str, doc: YamlMapping) -> list[Problem]:
    # The message must not repeat the value.
    problems = []
    for name, instead in _ENV_ONLY.items():
        if name in doc.data:
            line, column = doc.position(name, key=True) or (None, None)
            doc.data.pop(name)
            problems.append(
                Problem(file, f"a secret is not allowed in a file; {instead}", line, column, name)
            )
    return problems


def _locate(file: str, doc: YamlMapping, from_env: Mapping[str, Any], err: ErrorDetails) -> Problem:
    name = str(err["loc"][0]) if err["loc"] else ""
    if name in from_env:
        message = map_error(ENVIRONMENT, YamlMapping({}), err, Settings).message
        return Problem(ENVIRONMENT, message, field=env_name(name))
    return map_error(file, doc, err, Settings)


def load_mapping(path: Path) -> YamlMapping:
    doc, _ = yamlfile.load_mapping(path)
    return doc


# Mailgun's regions (docs/mailgun.md cites the reference): API base URL and SMTP relay host.
MAILGUN_REGIONS = {
    "us": ("https://api.mailgun.net", "smtp.mailgun.org"),
    "eu": ("https://api.eu.mailgun.net", "smtp.eu.mailgun.org"),
}


def mailgun_domains(settings: Settings) -> tuple[str, ...]:
    """The configured sending domains, lower case, in the order given (RECONCILER_MAILGUN_DOMAINS)."""
    raw = settings.mailgun_domains or ""
    return tuple(dict.fromkeys(d.strip().lower() for d in raw.split(",") if d.strip()))


def mailgun_api_base(settings: Settings) -> str:
    return settings.mailgun_api_url or MAILGUN_REGIONS[settings.mailgun_region][0]


def relay_endpoint(settings: Settings) -> tuple[str, int]:
    """Where the gateway relays each sender's mail: the backend's SMTP relay when it has one of its
    own (Mailgun: the region's host, port 587 with TLS), else `relay_host`/`relay_port`."""
    if settings.backend == "mailgun":
        host = settings.mailgun_smtp_host or MAILGUN_REGIONS[settings.mailgun_region][1]
        return host, settings.mailgun_smtp_port
    return settings.relay_host, settings.relay_port


def relay_tls_required(settings: Settings) -> bool:
    """Mailgun's relay is reached with TLS required (smtp_tls_security_level = encrypt)."""
    return settings.backend == "mailgun"
