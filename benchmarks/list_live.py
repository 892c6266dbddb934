"""How long `ServiceClient.list_users()` takes for 10,000 live users over loopback (target <= 1 s).

The users are seeded straight into the SQLite store (creating 10,000 through the API would time
the hashing of 10,000 keys, not the listing); the service then runs as a real `reconciler-service
run` process, so the client and the server do not share a GIL, as in production.

    .venv/bin/python benchmarks/list_live.py [--users 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from reconciler.backend.http.client import ServiceClient
from reconciler_service.server import ADMIN_ATTRIBUTES, free_port
from reconciler_service.store import Store

TARGET_S = 1.0
ADMIN = "admin@example.com"


def seed(db: Path, count: int, admin_key: str) -> None:
    store = Store(db)
    store.create(ADMIN, dict(ADMIN_ATTRIBUTES), admin_key, {})
    attributes = {
        "role": "normal",
        "operation": False,
        "access": {"http_api": True, "smtp": True, "own_data_only": False},
        "timezone": "Asia/Tokyo",
        "locked": False,
        "smtp_senders": None,
        "description": "seeded by benchmarks/list_live.py",
    }
    store.seed(((f"user{i:05d}@example.com", attributes) for i in range(count)), "seedKey123")
    store.close()


def start(db: Path, admin_key: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    service = str(Path(sys.executable).with_name("reconciler-service"))
    proc = subprocess.Popen(
        [service, "run", "--db", str(db), "--port", str(port), "--admin-user", ADMIN],
        env={**os.environ, "RECONCILER_SERVICE_ADMIN_KEY": admin_key},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc, f"http://127.0.0.1:{port}/api/v2"


def measure(url: str, admin_key: str, runs: int, concurrency: int) -> tuple[list[float], int]:
    times: list[float] = []
    count = 0
    client = ServiceClient(url, ADMIN, SecretStr(admin_key), concurrency=concurrency)
    with client:
        client.get_user(ADMIN)  # the first verification pays the key hash once, as any session does
        for _ in range(runs):
            started = time.perf_counter()
            count = len(client.list_users())
            times.append(time.perf_counter() - started)
    return times, count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    admin_key = "k1" + secrets.token_hex(11)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        seed(db, args.users, admin_key)
        proc, url = start(db, admin_key)
        try:
            rows = [(c, *measure(url, admin_key, args.runs, c)) for c in (1, 4, 8)]
        finally:
            proc.terminate()
            proc.wait()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"list_users() of {args.users + 1} users over loopback; {machine}")
    print(f"{'concurrency':>11}  {'best s':>7}  {'median s':>8}  {'users':>6}  target <= {TARGET_S} s")
    ok = True
    for concurrency, times, count in rows:
        best, median = min(times), sorted(times)[len(times) // 2]
        ok &= count == args.users + 1
        verdict = "ok" if best <= TARGET_S else "SLOW"
        print(f"{concurrency:>11}  {best:>7.3f}  {median:>8.3f}  {count:>6}  {verdict}")
    default = next(r for r in rows if r[0] == 8)
    return 0 if ok and min(default[1]) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
