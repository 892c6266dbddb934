"""kill -9 of `reconciler apply` at 10 random points, then a rerun: the service converges, every
user a killed run changed has an intent line in the audit log (written and fsynced before the
change was sent), and every line of the log stays readable."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.fault.helpers import DiskRepo, intents_since
from tests.fixtures.service import RunningService

USERS = 40
KILLS = 10


def test_kill_9_at_ten_points_then_a_rerun_converges_and_every_change_has_an_intent(
    tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    service = start_service(smtp=False, latency_ms=100)
    repo = DiskRepo(tmp_path, service)
    repo.write_admin()
    rng = random.Random(11)  # the kill points, reproducibly
    partial: list[int] = []
    for run in range(KILLS):
        for i in range(USERS):  # every run has USERS changes to make: creates first, then updates
            repo.write(f"app{i:03d}@example.com", description=f"revision {run}")
        before = {name: (u.updated_at, u.description) for name, u in repo.live().items()}
        ids_before = {e.get("id") for e in repo.audit().entries}
        # The killed run's lease stays on the service until its TTL runs out, but its holder ran on
        # this host and is gone: the next run takes it over at once, no --force-unlock needed.
        proc = repo.popen("apply", "--auto-approve")
        while not intents_since(repo.audit(), ids_before):  # the apply phase has begun
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.35))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        after = repo.live()
        changed = {n for n, u in after.items() if (u.updated_at, u.description) != before.get(n)}
        intended = {e["api_user"] for e in intents_since(repo.audit(), ids_before)}
        assert changed <= intended, f"run {run}: changed without an intent: {sorted(changed - intended)}"
        assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
        partial.append(len(changed))
    assert repo.audit().damaged == []
    assert any(0 < n < USERS for n in partial), partial  # some kills landed mid-apply
    rerun = repo.run("apply", "--auto-approve")
    assert rerun.returncode == 0, rerun.stderr
    assert "took over the service lease 'reconcile' of a run that is gone" in rerun.stderr
    assert repo.run("plan", "--detailed-exitcode").returncode == 0
    live = repo.live()
    assert len(live) == USERS + 1
    assert all(u.description == f"revision {KILLS - 1}" for n, u in live.items() if n.startswith("app"))
    assert repo.audit().unsettled() == []  # the rerun's plan gave every orphaned intent an outcome
