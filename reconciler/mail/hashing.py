"""Password hashes Dovecot's passwd-file accepts, computed in Python.

Hashing is the only slow part of a render (ARGON2ID with argon2-cffi's defaults takes about 0.1 s),
which is why render only calls a hasher for a user whose key fingerprint changed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol

from reconciler.errors import MailServerError, MissingExtra
from reconciler.secrets import ApiKey

Scheme = Literal["ARGON2ID", "BLF-CRYPT"]
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (bcrypt>=5: refuses) anything longer


class HashingNotInstalled(MissingExtra, MailServerError):
    """argon2-cffi and bcrypt are the `mail` extra: only a render hashes keys."""


# argon2 and bcrypt are imported when a hasher is made, not with this module: `plan` previews the
# mail files with a placeholder hasher and must work on an install without the mail extra.


def _not_installed(exc: ModuleNotFoundError) -> HashingNotInstalled:
    return HashingNotInstalled("the mail step's key hashes", "mail", exc.name or "argon2/bcrypt")


class Hasher(Protocol):
    """Turns a key into a passwd-file password field, e.g. `{ARGON2ID}$argon2id$...`."""

    @property
    def scheme(self) -> str: ...

    def __call__(self, key: ApiKey) -> str: ...


class Argon2idHasher:
    """ARGON2ID via argon2-cffi. The defaults (RFC 9106 low-memory: m=64 MiB, t=3, p=4) are verified
    against Dovecot 2.3; the parameters exist so the benchmark's first full render can be cheap."""

    scheme = "ARGON2ID"

    def __init__(
        self, time_cost: int | None = None, memory_cost: int | None = None, parallelism: int | None = None
    ):
        try:
            import argon2
        except ModuleNotFoundError as exc:
            raise _not_installed(exc) from None
        defaults = argon2.PasswordHasher()
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost or defaults.time_cost,
            memory_cost=memory_cost or defaults.memory_cost,
            parallelism=parallelism or defaults.parallelism,
        )

    def __call__(self, key: ApiKey) -> str:
        return "{ARGON2ID}" + self._hasher.hash(key.reveal())


class BlfCryptHasher:
    """BLF-CRYPT (bcrypt). Keys may be 128 characters but bcrypt stops at 72 bytes, so longer
    keys are refused rather than silently truncated."""

    scheme = "BLF-CRYPT"

    def __init__(self, rounds: int = 10) -> None:
        self._rounds = rounds
        try:
            import bcrypt
        except ModuleNotFoundError as exc:
            raise _not_installed(exc) from None
        self._hashpw, self._gensalt = bcrypt.hashpw, bcrypt.gensalt

    def __call__(self, key: ApiKey) -> str:
        raw = key.reveal().encode()
        if len(raw) > BCRYPT_MAX_BYTES:
            raise MailServerError(
                f"BLF-CRYPT cannot hash keys longer than {BCRYPT_MAX_BYTES} characters; use ARGON2ID"
            )
        return "{BLF-CRYPT}" + self._hashpw(raw, self._gensalt(self._rounds)).decode()


class CountingHasher:
    """Wraps a hasher and counts calls: the benchmark and tests prove unchanged keys cost nothing.
    Thread-safe: hash_all calls it from several threads."""

    def __init__(self, inner: Hasher) -> None:
        self.inner = inner
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def scheme(self) -> str:
        return self.inner.scheme

    def __call__(self, key: ApiKey) -> str:
        with self._lock:
            self.calls += 1
        return self.inner(key)


def hash_all(hasher: Hasher, keys: Sequence[ApiKey], workers: int | None = None) -> list[str]:
    """Hash `keys` on every CPU, in order. Threads suffice: argon2-cffi and bcrypt release the GIL
    while they hash, and the keys never leave this process (no pickling of secrets to workers)."""
    workers = min(workers or os.cpu_count() or 1, len(keys))
    if workers <= 1:
        return [hasher(key) for key in keys]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        return list(pool.map(hasher, keys))


class PendingHasher:
    """Stands in for a real hasher in check/preview mode: a fresh hash always differs from the line
    on disk, so a placeholder tells "this file would change" without spending any CPU."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.calls = 0

    def __call__(self, key: ApiKey) -> str:
        self.calls += 1
        return "{" + self.scheme + "}$pending"


def make_hasher(scheme: str) -> Hasher:
    if scheme == "ARGON2ID":
        return Argon2idHasher()
    if scheme == "BLF-CRYPT":
        return BlfCryptHasher()
    raise MailServerError(f"unsupported hash scheme {scheme!r}: use ARGON2ID or BLF-CRYPT")
