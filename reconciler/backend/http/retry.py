"""When the http-v2 transport tries a request again, and for how long.

Retries are bounded by a deadline per change, not by a small count: under a burst of 503s, 429s
and lost answers a count runs out while the service is still willing (docs/reliability.md,
"Retries"), and whether it runs out depends on how busy the machine is. Every request of one
change (the write, the read that settles a lost answer, the second attempt of a create) shares
the change's deadline; a read outside a change gets a deadline of its own.

The backoff is exponential with jitter (so the workers of one apply do not retry in step) and
never shorter than the service's `Retry-After`; a `Retry-After` that ends after the deadline is
not waited for: the error is reported at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_DEADLINE = 60.0  # seconds; RECONCILER_CHANGE_DEADLINE


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = DEFAULT_DEADLINE
    """Seconds one change (or one read outside a change) may spend, retries included."""
    max_retries: int | None = None
    """An extra cap on the retries of one request (RECONCILER_RETRIES); None: the deadline only."""
    backoff_factor: float = 0.1
    backoff_max: float = 5.0
    retry_after_max: float = 60.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """The pause before retry number `retry` (0 for the first): half to all of the
        exponential backoff, and at least what the service asked for."""
        backoff = min(self.backoff_max, self.backoff_factor * 2**retry)
        pause = random.uniform(backoff / 2, backoff)  # noqa: S311 - jitter, not security
        if retry_after is None:
            return pause
        return max(pause, min(retry_after, self.retry_after_max))

    def allows(self, retry: int) -> bool:
        return self.max_retries is None or retry < self.max_retries


class Deadlines:
    """The deadline of the change each thread is making (apply runs changes on a thread pool)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._local = threading.local()

    @contextmanager
    def change(self) -> Iterator[None]:
        """Every request inside shares one deadline; nested uses keep the outermost one."""
        if getattr(self._local, "at", None) is not None:
            yield
            return
        self._local.at = time.monotonic() + self.seconds
        try:
            yield
        finally:
            self._local.at = None

    def remaining(self) -> float:
        at = getattr(self._local, "at", None)
        return self.seconds if at is None else at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None when absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def sleep_within(deadlines: Deadlines, pause: float) -> bool:
    """Sleep `pause` seconds if the deadline leaves room for it and for one more attempt;
    False (without sleeping) when it does not."""
    if pause >= deadlines.remaining():
        return False
    time.sleep(pause)
    return True
