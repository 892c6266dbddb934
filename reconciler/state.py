"""Local state of the reconciler: the one-run-at-a-time lock and the audit log.

Both live in the state directory (`.reconciler/` beside users/ by default). The lock is per
service URL, so two users repos applying to different services never wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.errors import LockHeld

STALE_AFTER = timedelta(hours=2)
AUDIT_FILE = "audit.jsonl"


@dataclass(frozen=True)
class LockInfo:
    holder: str
    host: str
    pid: int
    started_at: str
    command: str
    service: str

    def describe(self) -> str:
        return f"{self.holder} on {self.host} (pid {self.pid}, {self.command}, since {self.started_at})"


def actor() -> str:
    """Who runs this: the CI actor when there is one, else user@host."""
    for name in ("RECONCILER_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


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
    if info.host == socket.gethostname() and not _alive(info.pid):
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
    state_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(state_dir, service)
    now = datetime.now(UTC)
    info = LockInfo(
        actor(), socket.gethostname(), os.getpid(), now.isoformat(timespec="seconds"), command, service
    )
    with _guard(path):
        _acquire(path, info, now, force)
    try:
        yield info
    finally:
        with _guard(path):
            if read_lock(path) == info:
                path.unlink(missing_ok=True)


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
    # Written whole and renamed into place: a reader never sees a half-written lock.
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)


# --- audit log ------------------------------------------------------------------------------------


def git_commit(directory: Path) -> str | None:
    """The users repo's commit, when it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


class AuditLog:
    """Append-only JSON lines. Entries carry names and field values, never a key."""

    def __init__(self, state_dir: Path, context: Mapping[str, Any]) -> None:
        self.path = state_dir / AUDIT_FILE
        self.context = dict(context)

    def write(self, **entry: Any) -> None:
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **self.context, **entry}
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)

    def tail(self, count: int) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()[-count:]
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]
