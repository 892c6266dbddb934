"""The secret behind the keyed key fingerprints the reconciler records on the service.

It is independent of every API key on purpose. A fingerprint is `HMAC(secret, key)`, and anyone who
can read the annotation and knows the secret can test guesses of the key offline, as fast as they
can compute HMACs. Derived from an API key (as it once was from the reconciler's own), the secret is
no secret at all for that key: the admin's fingerprint became `HMAC(HMAC(K, c), K)`, checkable with
nothing but K. A random secret that only CI and on-call hold makes a fingerprint worthless without it.

Where it comes from, first match wins: `RECONCILER_FINGERPRINT_SECRET`; the file named by
`fingerprint_secret_file` (reconciler.yaml or RECONCILER_FINGERPRINT_SECRET_FILE); the default file
`<state_dir>/fingerprint.secret` beside users/. `reconciler secret init` creates that file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from reconciler.config import Settings, base_dir
from reconciler.errors import ConfigError, SecretUnavailable
from reconciler.keyfiles import read_key_file

DEFAULT_FILE = "fingerprint.secret"  # in the state dir
SECRET_BYTES = 32  # 256 bits of randomness, written as 64 hex characters
MIN_LENGTH = 16  # characters: a short secret could be guessed together with the key
INIT_HINT = "run `reconciler secret init` (or set RECONCILER_FINGERPRINT_SECRET); see docs/runbook.md"


def secret_path(settings: Settings) -> Path:
    """The file the secret is read from when the environment does not hold it."""
    base = base_dir(settings)
    if settings.fingerprint_secret_file is not None:
        path = Path(settings.fingerprint_secret_file).expanduser()
        return path if path.is_absolute() else base / path
    return base / settings.state_dir / DEFAULT_FILE


def load_secret(settings: Settings) -> bytes | None:
    """The secret, or None when none is configured (no variable, no file): then keys cannot be
    compared, and nothing may be recorded. A file that exists but is unusable is an error."""
    if settings.fingerprint_secret is not None:
        return _checked(
            settings.fingerprint_secret.get_secret_value().encode(), "RECONCILER_FINGERPRINT_SECRET"
        )
    path = secret_path(settings)
    try:
        raw = read_key_file(path, label="fingerprint secret file")
    except SecretUnavailable:
        if settings.fingerprint_secret_file is not None:
            raise ConfigError(f"fingerprint_secret_file {path} does not exist: {INIT_HINT}") from None
        return None
    return _checked(raw.strip(), str(path))


def require_secret(settings: Settings) -> bytes:
    """The secret for a run that records fingerprints (apply): it must exist."""
    secret = load_secret(settings)
    if secret is None:
        raise ConfigError(f"no fingerprint secret: keys cannot be set or compared; {INIT_HINT}")
    return secret


def init_secret(settings: Settings) -> tuple[Path, bool]:
    """Create the secret file (0600, never overwritten); (path, True) when it was created now,
    (path, False) when it already existed."""
    path = secret_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_hex(SECRET_BYTES).encode() + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        load_secret(settings)  # an existing file must at least be usable
        return path, False
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
        handle.flush()
        os.fsync(handle.fileno())
    return path, True


def _checked(value: bytes, where: str) -> bytes:
    if len(value) < MIN_LENGTH:
        raise ConfigError(
            f"the fingerprint secret in {where} is too short ({len(value)} characters; at least "
            f"{MIN_LENGTH}): {INIT_HINT}"
        )
    return value
