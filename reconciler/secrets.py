"""Resolving `api_key` references into keys, and the redacted type that carries a key.

Only commands that need keys (plan, apply, reconcile, render) call `resolve`: `validate` must pass on
a pull request from a fork, where no secret is available.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from reconciler import model
from reconciler.errors import Problem, SecretError, SecretUnavailable, ValidationFailed
from reconciler.keyfiles import key_file_path, read_key_file
from reconciler.model import KeyRef, looks_like_key

if TYPE_CHECKING:
    from reconciler.desired import DesiredState

# The key rule lives in the model (which refuses a key pasted as a from_env name); these are its
# names of record for everyone else.
KEY_RE = model.KEY_RE
KEY_RULE = model.KEY_RULE
# Seconds one key resolution may take: a file on a hung network mount or a pathological age
# ciphertext must fail that one user, not hang the run (and the lock it holds).
RESOLVE_DEADLINE_S = 10.0
T = TypeVar("T")


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


def resolve(
    ref: KeyRef, base_dir: Path, env: Mapping[str, str] | None = None, *, deadline: float = RESOLVE_DEADLINE_S
) -> ApiKey:
    """Read the key a reference points at, within `deadline` seconds. Relative file paths are
    relative to `base_dir`."""
    # An environment lookup cannot block; already on a Deadline's worker (resolve_all), the
    # deadline is already there.
    if ref.from_env is not None or getattr(_worker, "active", False):
        return _resolve_now(ref, base_dir, env)
    with Deadline(deadline) as limit:
        return limit.call(lambda: _resolve_now(ref, base_dir, env), _what(ref))


def _what(ref: KeyRef) -> str:
    if ref.from_file is not None:
        return "reading the key file"
    return "decrypting the age-encrypted key" if ref.age is not None else "reading the key"


def _resolve_now(ref: KeyRef, base_dir: Path, env: Mapping[str, str] | None) -> ApiKey:
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
    raw = read_key_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"key file {path} is not UTF-8 text") from None
    return check_key(text.strip(), f"file {path}")


class Deadline:
    """Runs calls one at a time on a daemon worker thread, waiting at most `seconds` for each.

    A call that overruns is abandoned with its thread (a thread blocked in a read cannot be
    killed, but a daemon thread does not keep the process alive) and the next call gets a fresh
    thread. One thread serves a whole run, so 10,000 resolutions do not start 10,000 threads.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None] | None = None

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    def call(self, fn: Callable[[], T], what: str) -> T:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(self._jobs,), name="key-resolver", daemon=True).start()
        answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._jobs.put((fn, answer))
        try:
            ok, value = answer.get(timeout=self.seconds)
        except queue.Empty:
            self._jobs.put(None)  # the stuck worker exits if it ever comes back
            self._jobs = None
            raise SecretError(f"{what} did not finish within {self.seconds:g} s") from None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value


_worker = threading.local()  # `active` on a Deadline's worker thread


def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None]) -> None:
    _worker.active = True
    while (job := jobs.get()) is not None:
        fn, answer = job
        try:
            answer.put((True, fn()))
        except BaseException as exc:  # handed to the waiting caller, which re-raises it
            answer.put((False, exc))


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
    desired: DesiredState,
    env: Mapping[str, str] | None = None,
    names: Iterable[str] | None = None,
    *,
    deadline: float = RESOLVE_DEADLINE_S,
) -> ResolvedKeys:
    """Resolve the keys of `names` (api_users, any case; default all declared users), each within
    `deadline` seconds. Never raises for a single user: the caller wants every problem at once."""
    with Deadline(deadline) as limit:
        return _resolve_all(desired, env, names, limit)


def _resolve_all(
    desired: DesiredState, env: Mapping[str, str] | None, names: Iterable[str] | None, limit: Deadline
) -> ResolvedKeys:
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
            resolve_one = partial(resolve, user.api_key, file.parent, env)  # the one seam per key
            # Only files and age decryption can hang; a hand-off to the worker per environment
            # variable would cost 0.5 s for 10,000 users (docs/benchmarks.md).
            blocking = user.api_key.from_env is None
            keys[user.api_user] = limit.call(resolve_one, _what(user.api_key)) if blocking else resolve_one()
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
