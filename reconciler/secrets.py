"""Resolving `api_key` references into keys, and the redacted type that carries a key.

Only commands that need keys (plan, apply, reconcile, render) call `resolve`: `validate` must pass on
a pull request from a fork, where no secret is available.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NoReturn

from reconciler import model
from reconciler.errors import Problem, SecretError, SecretUnavailable, ValidationFailed
from reconciler.model import KeyRef, looks_like_key

if TYPE_CHECKING:
    from reconciler.desired import DesiredState

# The key rule lives in the model (which refuses a key pasted as a from_env name); these are its
# names of record for everyone else.
KEY_RE = model.KEY_RE
KEY_RULE = model.KEY_RULE
MAX_KEY_FILE_BYTES = 4096  # a key is at most 128 characters; anything bigger is the wrong file


class ApiKey:
    """A resolved API key. `repr`/`str` never show it; call `reveal()` at the last moment."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value.encode()).digest())

    def __reduce__(self) -> NoReturn:
        # Keys must not end up in pickles (multiprocessing, caches) by accident.
        raise TypeError("ApiKey cannot be pickled")


def check_key(value: str, source: str) -> ApiKey:
    """Apply the service's key rule (made strict). The message names the source, never the value."""
    if not KEY_RE.match(value):
        raise SecretError(f"the key from {source} is not valid: it must be {KEY_RULE}")
    return ApiKey(value)


def resolve(ref: KeyRef, base_dir: Path, env: Mapping[str, str] | None = None) -> ApiKey:
    """Read the key a reference points at. Relative file paths are relative to `base_dir`."""
    environ = os.environ if env is None else env
    if ref.from_env is not None:
        # KeyRef refuses a from_env that looks like a key; a reference built some other way
        # (model_construct) still never gets its value into a message.
        name = "named in from_env" if looks_like_key(ref.from_env) else ref.from_env
        # An empty value is what CI expands an unavailable secret to (a fork's pull request).
        if not environ.get(ref.from_env, "").strip():
            raise SecretUnavailable(f"environment variable {name} is not set")
        return check_key(environ[ref.from_env].strip(), f"env {name}")
    if ref.age is not None:
        from reconciler import agekeys  # pyrage is only loaded when a repo uses age

        return check_key(agekeys.decrypt(ref.age, agekeys.load_identities(environ)), "the age ciphertext")
    path = key_file_path(ref, base_dir)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SecretUnavailable(f"key file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"cannot read key file {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise SecretError(f"key file {path} is not UTF-8 text") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise SecretError(f"key file {path} is too large to hold one key") from None
    return check_key(text.strip(), f"file {path}")


def key_file_path(ref: KeyRef, base_dir: Path) -> Path:
    """Where a `from_file` reference points; relative paths start at the declaring file's directory,
    so a users repository works from any current directory."""
    assert ref.from_file is not None
    try:
        path = Path(ref.from_file).expanduser()
    except RuntimeError:  # `~name/...` for a user this machine does not have
        raise SecretError(
            f"key file {ref.from_file}: {ref.from_file.split('/')[0]} has no home here"
        ) from None
    return path if path.is_absolute() else base_dir / path


@dataclass(frozen=True)
class ResolvedKeys:
    """The keys of declared users, and everything that went wrong, collected in one pass.

    `keys` maps api_user (as declared) -> key; `missing` has one located problem per user whose key
    could not be read or breaks the key rule; `unusable` the subset where a key is present but wrong
    (invalid, undecryptable, unreadable) rather than simply absent; `warnings` one per key file
    readable by group/others.
    """

    keys: Mapping[str, ApiKey]
    missing: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    unusable: tuple[Problem, ...] = ()

    def raise_if_missing(self) -> None:
        if self.missing:
            raise ValidationFailed(list(self.missing))


def resolve_all(
    desired: DesiredState, env: Mapping[str, str] | None = None, names: Iterable[str] | None = None
) -> ResolvedKeys:
    """Resolve the keys of `names` (api_users, any case; default all declared users). Never raises
    for a single user: the caller wants every problem of the run at once."""
    wanted = None if names is None else {name.lower() for name in names}
    keys: dict[str, ApiKey] = {}
    missing: list[Problem] = []
    unusable: list[Problem] = []
    warnings: list[Problem] = []
    for user in desired.users:
        if wanted is not None and user.api_user.lower() not in wanted:
            continue
        file = desired.files.get(user.api_user, Path(f"{user.api_user}.yaml"))
        field = f"api_key.{user.api_key.kind}"
        line = desired.line(user.api_user, field) or desired.line(user.api_user, "api_key")
        try:
            keys[user.api_user] = resolve(user.api_key, file.parent, env)
        except SecretError as exc:
            problem = Problem(str(file), str(exc), line, field=field)
            missing.append(problem)
            if not isinstance(exc, SecretUnavailable):
                unusable.append(problem)
            continue
        if user.api_key.from_file is not None and loose_permissions(key_file_path(user.api_key, file.parent)):
            message = "the key file is readable by group or others; chmod 600 it"
            warnings.append(Problem(str(file), message, line, field=field))
    return ResolvedKeys(MappingProxyType(keys), tuple(missing), tuple(warnings), tuple(unusable))


def loose_permissions(path: Path) -> bool:
    """True when a key file is readable by group or others (worth a warning, not an error)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def fingerprint(key: ApiKey, secret: bytes) -> str:
    """A keyed fingerprint: equal keys give equal fingerprints, but without `secret` nobody can
    test guesses against it (a plain hash of an 8-character key would be brute-forced quickly)."""
    digest = hmac.new(secret, key.reveal().encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"
