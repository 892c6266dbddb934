"""Is the run that holds the lease (or the local lock) still alive? Only answerable on its own host.

A pid alone cannot say: after a crash the kernel may give the same pid to another process. So a run
records its *process identity* with the lease and the lock: the boot, the pid namespace and the
process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot). Later a run on the
same host compares that with what /proc says now: no such process, or one that started at another
time, means the holder is gone and its lease can be taken over at once instead of waiting out the
TTL. Anything this host cannot tell for sure (another host, another pid namespace, no /proc, a
lease taken by an older reconciler) answers "not known to be gone", and the TTL decides as before.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _namespace() -> str | None:
    """The boot and the pid namespace this process sees its pids in."""
    boot = _read(PROC / "sys" / "kernel" / "random" / "boot_id")
    try:
        pid_ns = os.readlink(PROC / "self" / "ns" / "pid")
    except OSError:
        return None
    return f"{boot}/{pid_ns}" if boot else None


def _start_ticks(pid: int) -> str | None:
    stat = _read(PROC / str(pid) / "stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> str:
    """`<boot id>/<pid namespace>/<start ticks>` of a process (this one by default); empty when
    this system cannot say (no /proc)."""
    namespace, ticks = _namespace(), _start_ticks(pid if pid is not None else os.getpid())
    return f"{namespace}/{ticks}" if namespace and ticks else ""


def holder_gone(host: str, pid: int, recorded: str) -> bool:
    """True only when sure: the holder ran on this host, in this boot and pid namespace, and its
    pid now names no process or a process that started at another time (a reused pid)."""
    if host != socket.gethostname() or not recorded:
        return False
    namespace, _, ticks = recorded.rpartition("/")
    if not namespace or namespace != _namespace():
        return False
    return _start_ticks(pid) != ticks
