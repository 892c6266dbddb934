"""The local lock: one run at a time on this machine, per scope (a service URL, a mail directory).

A lock file in the state directory (`.reconciler/` beside users/) names its holder; a second run
fails fast naming it; a stale lock (its process is gone, or older than STALE_AFTER) is taken over,
and --force-unlock takes over any lock. It is the fallback of a backend without leases (lease.py)
and the lock of a mail directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.errors import LockHeld, StateError
from reconciler.run.identity import actor
from reconciler.run.liveness import holder_gone, process_identity

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(hours=2)
WAIT_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0)  # seconds between attempts while waiting (--lock-timeout)


@dataclass(frozen=True)
class LockInfo:
    holder: str
    host: str
    pid: int
    started_at: str
    command: str
    service: str
    process_started: str = ""  # reconciler.run.liveness: tells a dead holder from a reused pid

    def describe(self) -> str:
        return f"{self.holder} on {self.host} (pid {self.pid}, {self.command}, since {self.started_at})"


def lock_path(state_dir: Path, service: str) -> Path:
    digest = hashlib.sha256(service.encode()).hexdigest()[:12]
    return state_dir / f"reconcile-{digest}.lock"


def read_lock(path: Path) -> LockInfo | None:
    try:
        return LockInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _stale(info: LockInfo | None, now: datetime) -> bool:
    if info is None:
        return True  # unreadable: locks are renamed into place whole, so this is damage, not a race
    if info.process_started:
        if holder_gone(info.host, info.pid, info.process_started):
            return True
    elif info.host == socket.gethostname() and not _alive(info.pid):
        return True
    try:
        return now - datetime.fromisoformat(info.started_at) > STALE_AFTER
    except ValueError:
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def reconcile_lock(state_dir: Path, service: str, command: str, *, force: bool = False) -> Iterator[LockInfo]:
    """Hold the lock for one run. A second run fails fast naming the holder; a stale lock (its
    process is gone, or older than STALE_AFTER) is taken over, and `force` takes over any lock."""
    path = lock_path(state_dir, service)
    now = datetime.now(UTC)
    info = LockInfo(
        actor(),
        socket.gethostname(),
        os.getpid(),
        now.isoformat(timespec="seconds"),
        command,
        service,
        process_identity(),
    )
    with translated_os_errors("take the lock in", state_dir):
        state_dir.mkdir(parents=True, exist_ok=True)
        with _guard(path):
            _acquire(path, info, now, force)
    try:
        yield info
    finally:
        with translated_os_errors("release the lock in", state_dir), _guard(path):
            if read_lock(path) == info:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def translated_os_errors(action: str, state_dir: Path) -> Iterator[None]:
    """An OSError of the state directory (a file where the directory should be, no permission, a
    full disk) as a StateError naming the path and the reason, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or state_dir
        # mkdir on a regular file says "File exists", which reads as if all were well.
        reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror or type(exc).__name__
        raise StateError(
            f"cannot {action} the state directory: {where}: {reason} "
            "(setting state_dir, RECONCILER_STATE_DIR)"
        ) from exc


@contextlib.contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Serialise check-and-take on this host: without it, two runs that both find a stale lock (or
    one that finds a lock file not written yet) could both go ahead. The lock is per host anyway."""
    with open(path.with_suffix(".guard"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def _acquire(path: Path, info: LockInfo, now: datetime, force: bool) -> None:
    held = read_lock(path) if path.exists() else None
    if held is not None and not force and not _stale(held, now):
        raise LockHeld(
            f"another run holds the lock: {held.describe()}. If that run is gone, "
            f"run again with --force-unlock (lock file {path})"
        )
    if held is not None and not force:
        log.warning("took over the lock %s of a run that is gone: %s", path, held.describe())
    # Written whole and renamed into place: a reader never sees a half-written lock.
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)


@contextlib.contextmanager
def wait_for_lock(
    state_dir: Path, service: str, command: str, *, force: bool, wait: float
) -> Iterator[LockInfo]:
    """`reconcile_lock`, retried for up to `wait` seconds while another run holds it."""
    deadline = time.monotonic() + wait
    with contextlib.ExitStack() as stack:
        attempt = 0
        while True:
            try:
                info = stack.enter_context(reconcile_lock(state_dir, service, command, force=force))
                break
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(step(attempt))
                attempt += 1
        yield info


def step(attempt: int) -> float:
    return WAIT_STEPS[min(attempt, len(WAIT_STEPS) - 1)]
