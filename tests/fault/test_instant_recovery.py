"""After kill -9 of a run, the next run on the same machine takes its lease (or local lock) over at
once, saying whose it was; a live holder, a reused pid's new process and another host's run keep it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.errors import LockHeld
from reconciler.run.liveness import holder_gone, process_identity
from reconciler.run.lock import LockInfo, lock_path, reconcile_lock
from tests.fault.helpers import DiskRepo, intents_since
from tests.fixtures.service import RunningService


def _lease(service: RunningService, *, host: str, pid: int, process_started: str) -> None:
    with service.client() as client:
        client.acquire_lease(
            "reconcile",
            {
                "holder": "someone@elsewhere",
                "host": host,
                "pid": pid,
                "command": "apply",
                "ttl_seconds": 600,
                "process_started": process_started,
            },
        )


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def repo(tmp_path: Path, start_service: Callable[..., RunningService]) -> DiskRepo:
    repo = DiskRepo(tmp_path, start_service(smtp=False, latency_ms=100))
    repo.write_admin()
    return repo


def test_kill_9_of_an_apply_then_an_immediate_rerun_on_the_same_machine_exits_0(repo: DiskRepo) -> None:
    for i in range(30):
        repo.write(f"app{i:03d}@example.com")
    proc = repo.popen("apply", "--auto-approve")
    while not intents_since(repo.audit(), set()):  # the run holds the lease and is writing
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    started = time.monotonic()
    rerun = repo.run("apply", "--auto-approve")
    assert rerun.returncode == 0, rerun.stderr
    assert "took over the service lease 'reconcile' of a run that is gone" in rerun.stderr
    assert f"pid {proc.pid}" in rerun.stderr  # whose it was
    assert time.monotonic() - started < 30  # not the 60 s TTL
    assert repo.run("plan", "--detailed-exitcode").returncode == 0


def test_a_live_holder_on_this_host_keeps_the_lease(repo: DiskRepo, sleeper: subprocess.Popen[bytes]) -> None:
    _lease(
        repo.service,
        host=socket.gethostname(),
        pid=sleeper.pid,
        process_started=process_identity(sleeper.pid),
    )
    held = repo.run("apply", "--auto-approve")
    assert held.returncode == 1
    assert "another run holds the service lease" in held.stderr


def test_a_reused_pid_does_not_keep_a_dead_holders_lease(
    repo: DiskRepo, sleeper: subprocess.Popen[bytes]
) -> None:
    # The holder's pid now names another process (the sleeper), which started at another time.
    namespace = process_identity().rpartition("/")[0]
    _lease(repo.service, host=socket.gethostname(), pid=sleeper.pid, process_started=f"{namespace}/1")
    taken = repo.run("apply", "--auto-approve")
    assert taken.returncode == 0, taken.stderr
    assert "took over the service lease" in taken.stderr


def test_a_holder_on_another_host_keeps_the_lease_until_its_ttl(repo: DiskRepo) -> None:
    _lease(repo.service, host="other-host.example", pid=2**22, process_started=process_identity())
    held = repo.run("apply", "--auto-approve")
    assert held.returncode == 1
    assert "other-host.example" in held.stderr


def test_liveness_answers_only_what_it_can_know(sleeper: subprocess.Popen[bytes]) -> None:
    here = socket.gethostname()
    mine = process_identity(sleeper.pid)
    assert mine and not holder_gone(here, sleeper.pid, mine)
    assert not holder_gone(here, os.getpid(), "")  # an older run recorded nothing: the TTL decides
    assert not holder_gone("elsewhere", 2**22, mine)
    other_namespace = "another-boot/pid:[1]/" + mine.rpartition("/")[2]
    assert not holder_gone(here, 2**22, other_namespace)
    sleeper.kill()
    sleeper.wait()
    assert holder_gone(here, sleeper.pid, mine)


def _lock_file(state: Path, service: str, pid: int, process_started: str) -> Path:
    path = lock_path(state, service)
    state.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    info = LockInfo("someone", socket.gethostname(), pid, now, "apply", service, process_started)
    path.write_text(json.dumps(asdict(info)))
    return path


def test_the_local_lock_of_a_dead_run_on_this_host_is_taken_over_at_once(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / ".reconciler"
    namespace = process_identity().rpartition("/")[0]
    # The pid is alive but names another process than the one that took the lock: a reused pid.
    _lock_file(state, "svc", sleeper.pid, f"{namespace}/1")
    with caplog.at_level("WARNING", logger="reconciler"), reconcile_lock(state, "svc", "apply") as held:
        assert held.pid == os.getpid()
    assert "took over the lock" in caplog.text and f"pid {sleeper.pid}" in caplog.text


def test_the_local_lock_of_a_live_run_is_kept(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state = tmp_path / ".reconciler"
    _lock_file(state, "svc", sleeper.pid, process_identity(sleeper.pid))
    with pytest.raises(LockHeld), reconcile_lock(state, "svc", "apply"):
        pass
