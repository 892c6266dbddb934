"""300 users applied to a service that answers 20 % of requests 503, 5 % 429 (Retry-After), loses
5 % of answers after doing the work, and answers slowly, while every CPU of the machine is busy:
ONE run converges (retries are bounded by a deadline per change, not a count), with no user lost,
none duplicated, no field wrong, and every key proven by logging in with it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.fault.helpers import FAULT_MIX, DiskRepo, busy_cpus, write_fleet
from tests.fixtures.service import RunningService

USERS = 300


@pytest.mark.timeout(300)
def test_300_users_converge_under_faults_in_one_run_while_every_cpu_is_busy(
    tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    service = start_service(smtp=False)
    repo = DiskRepo(tmp_path, service)
    write_fleet(repo, USERS)
    for name, value in FAULT_MIX.items():
        setattr(service.faults, name, value)
    started = time.monotonic()
    with busy_cpus() as busy:
        done = repo.run("apply", "--auto-approve", timeout=240)
    service.faults.rate_5xx = service.faults.rate_429 = service.faults.rate_drop = 0
    service.faults.latency_ms = 0
    print(f"\n{USERS} users under faults, {busy} CPUs busy: one run, {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.returncode == 0, "not converged in one run:\n" + planned.stdout[-3000:]
    _assert_live_equals_files(repo)
    _assert_every_key_logs_in(repo)


def _assert_live_equals_files(repo: DiskRepo) -> None:
    live = repo.live()
    assert len(live) == USERS + 1  # none lost, none extra (a duplicate would be a second name)
    for i in range(USERS):
        user = live[f"app{i:03d}@example.com"]
        smtp = i % 3 == 0
        assert (user.role, user.operation, user.locked) == (
            "admin" if i % 50 == 0 else "normal",
            i % 2 == 0,
            False,
        )
        assert (user.access.http_api, user.access.smtp, user.access.own_data_only) == (True, smtp, i % 5 == 0)
        assert user.timezone == ["UTC", "Asia/Tokyo", "Europe/Paris"][i % 3]
        assert user.description == f"application {i}"
        expected = (f"app{i:03d}@example.com", f"@app{i:03d}.example.com") if smtp else None
        assert (tuple(user.smtp_senders) if user.smtp_senders else None) == expected


def _assert_every_key_logs_in(repo: DiskRepo) -> None:
    with requests.Session() as session:
        for name, key in repo.keys.items():
            for _ in range(10):  # the service sheds key checks with 503 + Retry-After when CPUs are short
                answer = session.get(
                    f"{repo.service.base_url}/api_users/{name}", auth=(name, key), timeout=10
                )
                if answer.status_code != 503:
                    break
                time.sleep(float(answer.headers.get("Retry-After", "1")))
            assert answer.status_code == 200, (name, answer.status_code)
