"""Injected faults for the embedded service, so tests and benchmarks can show the client surviving
what production networks do. One mutable `FaultConfig` per running service: tests change it at run time."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class Fault(Enum):
    NONE = "none"
    DROP = "drop"  # the request is processed, then the connection is cut: the response is lost
    UNAVAILABLE = "503"  # answered before processing, so a retry is safe
    THROTTLE = "429"  # answered before processing, with Retry-After
    FAIL = "500"  # answered before processing; the client does not retry it


@dataclass
class FaultConfig:
    """What to inject on /api/v2/api_users* routes. Rates are probabilities in [0, 1]."""

    latency_ms: float = 0.0
    rate_5xx: float = 0.0
    rate_429: float = 0.0
    rate_drop: float = 0.0
    retry_after_s: int = 1
    seed: int | None = None
    # Writes (POST/PATCH/DELETE) to these api_users (lower case) answer 500: "one change fails mid-run".
    fail_writes_for: set[str] = field(default_factory=set)
    # PATCHes to these api_users answer 200 with the unchanged user: a service that silently ignores
    # a change, which only the reconciler's plan-after-apply can notice.
    ignore_writes_for: set[str] = field(default_factory=set)
    # Writes to these api_users are processed and then their answer is lost (the connection is cut),
    # once each: "the answer to that one PATCH never arrived".
    drop_next_write_for: set[str] = field(default_factory=set)
    # Lease names whose next PUT is taken and its answer lost (the acquiring run never sees its token).
    drop_next_lease_put: set[str] = field(default_factory=set)
    # Behave as a contract 2.0 service: no leases, no operation log (404), as older deployments.
    no_shared_state: bool = False
    # Deterministic faults for the next requests, in order, before any random ones.
    next_faults: deque[Fault] = field(default_factory=deque)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fault injection, not security

    def draw(self) -> Fault:
        """The fault for one request; thread-safe so a seed gives a reproducible sequence."""
        with self._lock:
            if self.next_faults:
                return self.next_faults.popleft()
            if not (self.rate_drop or self.rate_5xx or self.rate_429):
                return Fault.NONE
            roll = self._rng.random()
        for fault, rate in (
            (Fault.DROP, self.rate_drop),
            (Fault.UNAVAILABLE, self.rate_5xx),
            (Fault.THROTTLE, self.rate_429),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return Fault.NONE

    def fails_writes_for(self, api_user: str | None) -> bool:
        return _listed(api_user, self.fail_writes_for)

    def ignores_writes_for(self, api_user: str | None) -> bool:
        return _listed(api_user, self.ignore_writes_for)

    def drops_write_for(self, api_user: str | None) -> bool:
        """True once for each api_user in drop_next_write_for (which it then leaves)."""
        with self._lock:
            match = next((u for u in self.drop_next_write_for if _listed(api_user, {u})), None)
            if match is not None:
                self.drop_next_write_for.discard(match)
        return match is not None


def drops_lease_put(config: FaultConfig, name: str | None) -> bool:
    """True once for each lease name in drop_next_lease_put (which it then leaves)."""
    if name is None or name not in config.drop_next_lease_put:
        return False
    config.drop_next_lease_put.discard(name)
    return True


def _listed(api_user: str | None, names: set[str]) -> bool:
    return api_user is not None and api_user.lower() in {u.lower() for u in names}
