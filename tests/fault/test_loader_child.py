"""The forked loader of a big users/ directory dies with its parent: kill -9 of `reconciler`
while it loads 3,000 files leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.desired.helpers import user_yaml

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
FILES = 3000  # above desired.PARALLEL_THRESHOLD, so half of them are parsed by a forked child


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init counts: it holds nothing and runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_kill_9_while_loading_leaves_no_orphan_loader(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    for i in range(FILES):
        name = f"u{i:05d}@example.com"
        (users / f"{name}.yaml").write_text(user_yaml(name))
    proc = subprocess.Popen([RECONCILER, "validate", "--users", str(users)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (children := _children(proc.pid)):
        assert proc.poll() is None, "validate finished before its loader child was seen"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    (child,) = children
    time.sleep(0.03)  # its first act is to ask for SIGKILL when its parent dies; let it get there
    os.kill(child, signal.SIGSTOP)  # it cannot finish on its own now: only its parent's death ends it
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = _gone(child)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone, "the loader child outlived its killed parent"
