"""A/B of `reconciler plan` (10,000 declared users against the same 10,000 live, a no-op): this
checkout against another checkout of the project (`--base DIR`, e.g. a `git worktree` of the
commit to compare with), run alternately against one service, so both sides see the same load.
Reports wall time and the child's CPU time (user + sys), which a busy machine disturbs less.

    git worktree add /tmp/base <commit>
    .venv/bin/python benchmarks/plan_ab.py --base /tmp/base [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import plan_apply as bench


def one_plan(root: Path, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [str(bench.BIN / "reconciler"), "plan"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-500:]
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reconciler-ab-"))
    bench.write_users(root / "users", [f"user{i:05d}@example.com" for i in range(9999)], "Asia/Tokyo")
    bench.seed(root / "service.db", root / "users", bench.FP_SECRET.encode())
    sides: dict[str, list[tuple[float, float]]] = {"this": [], "base": []}
    with bench.running_service(root / "service.db") as svc:
        env = os.environ | {
            "RECONCILER_API_URL": svc.url,
            "RECONCILER_API_USER": bench.ADMIN,
            "RECONCILER_API_KEY": bench.ADMIN_KEY,
            "RECONCILER_FINGERPRINT_SECRET": bench.FP_SECRET,
            "ADMIN_KEY": bench.ADMIN_KEY,
            "USER_KEY": bench.USER_KEY,
        }
        for _ in range(args.pairs):
            sides["this"].append(one_plan(root, env))
            sides["base"].append(one_plan(root, env | {"PYTHONPATH": str(args.base.resolve())}))
    for name, runs in sides.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{name}: wall median {statistics.median(walls):.3f} (min {min(walls):.3f}), "
            f"cpu median {statistics.median(cpus):.3f} (min {min(cpus):.3f})"
        )


if __name__ == "__main__":
    main()
