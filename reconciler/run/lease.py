"""One run at a time: the backend's lease `reconcile` (contract 2.1 for http-v2), or the local lock.

The lease excludes runs on every machine, is renewed in the background while the run lasts, and
fences the run's writes (the backend stops writing once it is lost). A backend whose capabilities
say it has no leases gets the local lock in the state directory instead, with one warning that
runs on other machines are not excluded. Whether there are leases is read from
`backend.capabilities`, never found out by trying.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.backend.base import Backend, Leases
from reconciler.errors import LeaseLost, LockHeld, ReconcilerError
from reconciler.model import Lease
from reconciler.run.identity import actor
from reconciler.run.liveness import holder_gone, process_identity
from reconciler.run.lock import lock_path, read_lock, step, wait_for_lock

LEASE_NAME = "reconcile"


@dataclass
class RunLock:
    """What a run holds: the service's lease, or (fallback) the local lock. `broken` names the lease
    or lock that --force-unlock broke, `warnings` what the person running it must be told."""

    kind: str  # "lease" | "local"
    description: str
    broken: str | None = None
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def run_lock(
    backend: Backend,
    state_dir: Path,
    service: str,
    command: str,
    *,
    force: bool = False,
    wait: float = 0.0,
    ttl: int = 60,
) -> Iterator[RunLock]:
    """Hold the backend's lease for one run, renewed in the background; the backend fences its
    writes with it and stops writing once it is lost. Without leases: the local lock."""
    leases = backend.leases if backend.capabilities.leases else None
    if leases is None:
        with _local(backend.name, state_dir, service, command, force=force, wait=wait) as local:
            yield local
        return
    request = {
        "holder": actor(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "ttl_seconds": ttl,
        "process_started": process_identity(),
    }
    taken_over: list[str] = []
    broken = _force(leases) if force else None
    lease = _with_wait(lambda: _acquire_lease(leases, request, taken_over), wait)
    token = lease.token.get_secret_value() if lease.token else ""
    backend.use_lease(token)
    renewer = _Renewer(backend, leases, token, request, ttl)
    renewer.start()
    try:
        yield RunLock("lease", f"the service lease '{LEASE_NAME}'", broken, taken_over)
    finally:
        renewer.stop()
        with contextlib.suppress(ReconcilerError):  # it expires by itself anyway
            leases.release(LEASE_NAME, token)


def _acquire_lease(leases: Leases, request: dict[str, Any], taken_over: list[str]) -> Lease:
    """Take the lease. When the service took our PUT but its answer was lost (the retry then meets
    a lease held by this very process: same holder, host and pid), the lease is ours without its
    token: break it and take it again, rather than fail or wait out the TTL. A lease whose holder
    ran on this host and is gone (killed, crashed: reconciler.run.liveness) is taken over at once,
    saying whose it was; a holder on another host keeps it until its TTL runs out."""
    try:
        return leases.acquire(LEASE_NAME, request)
    except LockHeld as exc:
        held = exc.holder
        if not _ours(held, request):
            if not (isinstance(held, Lease) and holder_gone(held.host, held.pid, held.process_started)):
                raise
            taken_over.append(
                f"took over the service lease '{LEASE_NAME}' of a run that is gone "
                f"(its process {held.pid} on this host no longer runs): {held.describe()}"
            )
    leases.force_release(LEASE_NAME)
    return leases.acquire(LEASE_NAME, request)


def _ours(held: object, request: dict[str, Any]) -> bool:
    return (
        isinstance(held, Lease)
        and held.holder == request["holder"]
        and held.host == request["host"]
        and held.pid == request["pid"]
    )


def _force(leases: Leases) -> str | None:
    held = leases.get(LEASE_NAME)
    if not leases.force_release(LEASE_NAME):
        return None
    return held.describe() if held is not None else "an expired lease"


def _with_wait(acquire: Callable[[], Lease], wait: float) -> Lease:
    deadline, attempt = time.monotonic() + wait, 0
    while True:
        try:
            return acquire()
        except LockHeld as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _held_message(exc, wait) from None
            time.sleep(min(step(attempt), left))
            attempt += 1


def _held_message(exc: LockHeld, wait: float) -> LockHeld:
    waited = f" (waited {wait:g}s)" if wait else ""
    until = ""
    if isinstance(exc.holder, Lease):
        until = f"; it expires by itself at {exc.holder.expires_at.strftime('%H:%M:%SZ')} unless renewed"
    return LockHeld(
        f"{exc}{waited}{until}. Wait for it with --lock-timeout DURATION (e.g. 5m), or, if that run is "
        "gone, break it with --force-unlock",
        exc.holder,
    )


class _Renewer:
    """Renews the lease every ttl/3 seconds; a failed renewal loses the lease for the backend."""

    def __init__(
        self, backend: Backend, leases: Leases, token: str, request: dict[str, Any], ttl: int
    ) -> None:
        self.backend, self.leases, self.token, self.request = backend, leases, token, request
        self.interval = max(ttl / 3, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.leases.renew(LEASE_NAME, self.token, self.request)
            except LeaseLost as exc:
                self.backend.lose_lease(str(exc))
                return
            except ReconcilerError as exc:
                self.backend.lose_lease(f"renewing the lease failed: {exc}")
                return


@contextlib.contextmanager
def _local(
    backend: str, state_dir: Path, service: str, command: str, *, force: bool, wait: float
) -> Iterator[RunLock]:
    warning = (
        f"the {backend} backend has no leases: using the local lock in "
        f"{state_dir}; runs on other machines are not excluded"
    )
    path = lock_path(state_dir, service)
    held = read_lock(path) if force and path.exists() else None
    with wait_for_lock(state_dir, service, command, force=force, wait=wait):
        broken = held.describe() if held is not None else None
        yield RunLock("local", f"the local lock {path}", broken, [warning])
