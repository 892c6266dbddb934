"""API keys at rest: salted scrypt hashes, and the bounded pool that checks them.

Verifying a key costs milliseconds on purpose (slow for guessing), so the number of checks running
at once is bounded: a flood of bad logins must not take the service's memory or every thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

DEFAULT_SCRYPT_N = 2**14  # ~50 ms per hash: slow for guessing, fine for one login
FAST_SCRYPT_N = 2**10  # tests and benchmarks seed many users; the format records n per hash
# A key check costs one scrypt (~50 ms and 16 MiB at the default cost). Unbounded, a flood of bad
# logins runs hundreds at once: memory grows by gigabytes and a legitimate request waits seconds.
# So at most this many run at once; a few more may wait briefly; the rest are told to come back.
VERIFY_SLOTS = max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
VERIFY_WAITERS = 4 * VERIFY_SLOTS
VERIFY_WAIT_S = 0.5


class Busy(Exception):
    """Too many key checks are running or waiting; the caller should answer "retry later"."""


class KeyChecks:
    """A bounded number of concurrent key checks, with a bounded, briefly waiting queue.

    The checks run on a pool of as many threads as there are slots: scrypt's 16 MiB buffers then
    come from a few malloc arenas. Run on the request threads, each of a flood's threads kept its
    own freed buffer resident (peak RSS +290 MiB for 80 clients with only two checks at a time).
    """

    def __init__(self, slots: int, waiters: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._room = threading.BoundedSemaphore(slots + waiters)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="key-check")

    def check(self, key: str, stored: str, wait: float | None) -> bool:
        with self.taken(wait):
            return self._pool.submit(check_key, key, stored).result()

    @contextmanager
    def taken(self, wait: float | None) -> Iterator[None]:
        """Hold a slot; with `wait` set, raise Busy instead of queueing long (None: wait as long
        as it takes, for checks made by an already authenticated admin's write)."""
        if wait is not None and not self._room.acquire(blocking=False):
            raise Busy
        try:
            if not self._slots.acquire(timeout=wait):
                raise Busy
            try:
                yield
            finally:
                self._slots.release()
        finally:
            if wait is not None:
                self._room.release()


def hash_key(key: str, n: int = DEFAULT_SCRYPT_N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return "$".join(("scrypt", str(n), _b64(salt), _b64(digest)))


def check_key(key: str, stored: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(key.encode(), salt=base64.b64decode(salt), n=int(n), r=8, p=1, dklen=32)
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
