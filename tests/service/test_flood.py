"""The embedded service under a flood of bad logins, run as a real `reconciler-service run` process
with its real (slow, on purpose) key hash: key checks are bounded, a legitimate client is still
served quickly, memory stays bounded, and a failed login takes as long for an unknown name as for
a known one."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.service.test_cli import Subprocess, spawn

FLOODERS = 80
FLOOD_SECONDS = 3.0


@pytest.fixture
def real_service(tmp_path: Path) -> Iterator[Subprocess]:
    proc, url, key, _ = spawn(tmp_path)
    yield Subprocess(proc, url, key, 0)
    proc.kill()
    proc.wait()


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(field)


def _flood(url: str, stop: threading.Event, answers: Counter[int], lock: threading.Lock) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                status = session.get(
                    f"{url}/api_users", auth=("root@example.com", "WrongKey123"), timeout=10
                ).status_code
            except requests.RequestException:
                status = 0
            with lock:
                answers[status] += 1


def test_a_flood_of_bad_logins_neither_starves_a_legitimate_client_nor_grows_memory(
    real_service: Subprocess,
) -> None:
    url, admin = real_service.url, ("root@example.com", real_service.key)
    assert requests.get(f"{url}/api_users", auth=admin, timeout=10).status_code == 200
    baseline = _kib(real_service.proc.pid, "VmRSS")
    stop, lock, answers = threading.Event(), threading.Lock(), Counter[int]()
    flooders = [threading.Thread(target=_flood, args=(url, stop, answers, lock)) for _ in range(FLOODERS)]
    for thread in flooders:
        thread.start()
    time.sleep(0.5)  # the flood is at full strength
    latencies = []
    deadline = time.monotonic() + FLOOD_SECONDS
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = requests.get(f"{url}/api_users", auth=admin, timeout=10)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200
        time.sleep(0.1)
    stop.set()
    for thread in flooders:
        thread.join()
    grown_mib = (_kib(real_service.proc.pid, "VmHWM") - baseline) / 1024
    print(
        f"\nflood: {dict(answers)}; legit p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; peak RSS growth {grown_mib:.0f} MiB"
    )
    assert max(latencies) < 1.0, latencies
    assert answers[503] > 0 and set(answers) <= {401, 503}, answers  # excess logins are told to retry
    assert grown_mib < 150


def _failed_login_seconds(url: str, name: str) -> float:
    started = time.perf_counter()
    response = requests.get(f"{url}/api_users", auth=(name, "WrongKey123"), timeout=10)
    assert response.status_code == 401
    return time.perf_counter() - started


def test_a_failed_login_takes_as_long_for_an_unknown_name_as_for_a_known_one(
    real_service: Subprocess,
) -> None:
    url = real_service.url
    known, unknown = [], []
    for _ in range(12):  # interleaved, so a load spike on the machine hits both alike
        known.append(_failed_login_seconds(url, "root@example.com"))
        unknown.append(_failed_login_seconds(url, "nobody@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(
        f"\nfailed login: known {statistics.median(known) * 1000:.1f} ms, unknown "
        f"{statistics.median(unknown) * 1000:.1f} ms, ratio {ratio:.2f}"
    )
    assert 0.6 < ratio < 1.6
