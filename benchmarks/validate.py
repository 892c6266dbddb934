"""How long `reconciler validate` takes on N user files (target: 10,000 in at most 1.5 s wall).

    .venv/bin/python benchmarks/validate.py [--users N] [--runs R]

Generates N realistic users in a temporary directory, then times the loader in this process
(`load_users`, sequential and as shipped) and the full command as a user runs it (a subprocess of
`reconciler validate`, including interpreter start-up). Prints the best and median of R runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler import desired

TEMPLATE = """\
# yaml-language-server: $schema=../schema/user.schema.json
api_user: {name}
api_key:
  from_env: {env}
role: {role}
operation: {operation}
access:
  http_api: {http}
  smtp: true
  own_data_only: false
timezone: Asia/Tokyo
locked: {locked}
smtp_senders:
  - {name}
  - "@{domain}"
description: Generated user {i} for the validate benchmark
"""


def generate(users: Path, count: int) -> None:
    users.mkdir()
    for i in range(count):
        name = f"app{i:05d}@example.com"
        text = TEMPLATE.format(
            name=name,
            env=f"APP{i:05d}_API_KEY",
            role="admin" if i % 50 == 0 else "normal",
            operation=str(i % 3 == 0).lower(),
            http=str(i % 2 == 0).lower(),
            locked=str(i % 97 == 0).lower(),
            domain=f"d{i:05d}.example.com",
            i=i,
        )
        (users / f"{name}.yaml").write_text(text, encoding="utf-8")


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def run_cli(users: Path) -> None:
    command = [str(Path(sys.executable).with_name("reconciler")), "validate", "--users", str(users)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def load_sequential(users: Path) -> None:
    saved = desired.PARALLEL_THRESHOLD
    desired.PARALLEL_THRESHOLD = sys.maxsize
    try:
        desired.load_users(users)
    finally:
        desired.PARALLEL_THRESHOLD = saved


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--users", type=int, default=10_000, help="number of user files (default 10000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default 5)")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {cpus} CPU(s)")
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users"
        generate(users, args.users)
        rows = [
            ("load_users, one process", timed(lambda: load_sequential(users), args.runs)),
            ("load_users, as shipped", timed(lambda: desired.load_users(users), args.runs)),
            ("reconciler validate (subprocess)", timed(lambda: run_cli(users), args.runs)),
        ]
    print(f"\n{args.users} user files, {args.runs} runs each\n")
    print(f"| {'what':<34} | {'best s':>7} | {'median s':>8} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 10}|")
    for label, times in rows:
        print(f"| {label:<34} | {min(times):>7.3f} | {statistics.median(times):>8.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
