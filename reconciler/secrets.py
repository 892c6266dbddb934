"""Resolving `api_key` references into keys, and the redacted type that carries a key.

Only commands that need keys (plan, apply, reconcile, render) call `resolve`: `validate` must pass on
a pull request from a fork, where no secret is available.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import SecretError
from reconciler.model import KeyRef

KEY_RE = re.compile(r"^(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{8,128}$")
KEY_RULE = "8-128 characters of A-Z, a-z, 0-9 with at least one letter and one digit"


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

    def __reduce__(self) -> object:
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
        if ref.from_env not in environ:
            raise SecretError(f"environment variable {ref.from_env} is not set")
        return check_key(environ[ref.from_env].strip(), f"env {ref.from_env}")
    assert ref.from_file is not None
    path = Path(ref.from_file)
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read key file {path}: {type(exc).__name__}") from None
    return check_key(text.strip(), f"file {path}")


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
