"""SIGTERM (what a CI cancel sends) and SIGINT in the middle of a real `reconciler apply`: the run
stops starting changes, lets the ones in flight finish, records every outcome, releases the lock
and exits 143/130 saying what was and was not done; a second signal stops it at once, still
releasing the lock. A rerun converges."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fault.helpers import DiskRepo
from tests.fixtures.service import RunningService

USERS = 60
SLOW_S = 4


def _repo(tmp_path: Path, service: RunningService) -> DiskRepo:
    repo = DiskRepo(tmp_path, service)
    repo.write_admin()
    for i in range(USERS):
        repo.write(f"app{i:03d}@example.com", description=f"app {i}")
    return repo


def _converges(repo: DiskRepo) -> None:
    rerun = repo.run("apply", "--auto-approve")
    assert rerun.returncode == 0, rerun.stderr
    assert repo.run("plan", "--detailed-exitcode").returncode == 0
    assert len(repo.live()) == USERS + 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_apply_drains_records_every_outcome_releases_the_lock(
    tmp_path: Path, start_service: Callable[..., RunningService], signum: int, code: int
) -> None:
    service = start_service(smtp=False, latency_ms=40)
    repo = _repo(tmp_path, service)
    proc = repo.popen("apply", "--auto-approve")
    repo.wait_for_intents(3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    name = signal.Signals(signum).name
    assert f"error: {name}: stopped; " in err and "not started" in err
    assert repo.locks() == []
    read = repo.audit()
    assert read.damaged == [] and read.unsettled() == []  # every intent has its outcome
    started = {e["id"] for e in read.entries if e.get("event") == "intent"}
    assert 0 < len(started) < USERS  # it stopped part-way
    found = re.search(r"(\d+) of (\d+) changes applied", out)
    assert found is not None, out
    applied, planned = map(int, found.groups())
    assert applied == len(started)  # each change that was sent finished and was recorded
    assert out.count("not started: the run was interrupted") == planned - len(started)
    _converges(repo)


def test_a_second_sigterm_stops_at_once_and_still_releases_the_lock(
    tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    service = start_service(smtp=False)
    repo = _repo(tmp_path, service)
    service.faults.latency_ms = SLOW_S * 1000  # every request takes 4 s
    proc = repo.popen("apply", "--auto-approve")
    repo.wait_for_intents(1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # Releasing the lease is one more request to this slow service (4 s); draining would have
    # waited for the changes in flight and their follow-up requests too (8 s and more).
    assert time.monotonic() - stopped < SLOW_S + 2.5
    assert proc.returncode == 143, err
    assert "SIGTERM again: stopped at once" in err
    assert repo.locks() == []
    status = repo.run("status")
    assert "outcome unknown" in status.stdout
    service.faults.latency_ms = 0
    assert (
        repo.run("plan", "--detailed-exitcode").returncode == 2
    )  # no run holds the lease: the plan settles them
    assert repo.audit().unsettled() == []
    assert "outcome unknown" not in repo.run("status").stdout
    _converges(repo)


def test_sigterm_before_any_change_exits_143_and_releases_the_lease(
    tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    service = start_service(smtp=False)
    repo = _repo(tmp_path, service)
    service.faults.latency_ms = 1000  # the plan's requests are slow: the signal lands while planning
    proc = repo.popen("apply", "--auto-approve")
    deadline = time.monotonic() + 30
    while not repo.locks():  # the lease is taken, the plan is being made
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert repo.locks() == []
    assert repo.audit().entries == []  # nothing was sent, so nothing was intended
    service.faults.latency_ms = 0
    _converges(repo)
