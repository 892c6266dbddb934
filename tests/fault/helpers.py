"""A users repo on disk, the real `reconciler` entry point as a subprocess, and ways to read back
what a run left behind (the audit log, the lock)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from reconciler.run.audit import AuditLog, AuditRead
from tests.fixtures.service import RunningService, new_key

RECONCILER = str(Path(sys.executable).with_name("reconciler"))


@dataclass
class DiskRepo:
    root: Path
    service: RunningService
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def state_dir(self) -> Path:
        return self.root / ".reconciler"

    def write(self, api_user: str, **fields: Any) -> None:
        """A user file in flow style (fast to write by the hundred); its key from the env."""
        self.keys.setdefault(api_user, new_key())
        data = {"api_user": api_user, "api_key": {"from_env": _var(api_user)}, "role": "normal", **fields}
        self.users.mkdir(parents=True, exist_ok=True)
        (self.users / f"{api_user}.yaml").write_text(json.dumps(data) + "\n")

    def write_admin(self) -> None:
        self.keys[self.service.admin_user] = self.service.admin_key
        self.write(self.service.admin_user, role="admin", access={"http_api": True})

    def env(self) -> dict[str, str]:
        keys = {_var(user): key for user, key in self.keys.items()}
        return {**os.environ, **self.service.env(), **keys, "NO_COLOR": "1"}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [RECONCILER, *args, "--users", str(self.users)],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [RECONCILER, *args, "--users", str(self.users)],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        for key in self.keys.values():
            assert key not in done.stdout + done.stderr, "a key leaked into the output"
        return done

    def audit(self) -> AuditRead:
        return AuditLog(self.state_dir, {}).read()

    def audit_size(self) -> int:
        path = self.state_dir / "audit.jsonl"
        return path.stat().st_size if path.exists() else 0

    def locks(self) -> list[Path]:
        """What still holds "one run at a time": local lock files and the service's lease."""
        held = sorted(self.state_dir.glob("*.lock"))
        auth = (self.service.admin_user, self.service.admin_key)
        lease = requests.get(f"{self.service.base_url}/leases/reconcile", auth=auth, timeout=10)
        assert lease.status_code in (200, 404), lease.status_code
        return held + ([Path("lease:reconcile")] if lease.status_code == 200 else [])

    def live(self) -> dict[str, Any]:
        with self.service.client() as client:
            return {u.api_user: u for u in client.list_users()}

    def wait_for_intents(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for e in self.audit().entries if e.get("event") == "intent") < count:
            assert time.monotonic() < deadline, "no intent line appeared"
            time.sleep(0.005)


def _var(api_user: str) -> str:
    return "KEY_" + "".join(ch if ch.isalnum() else "_" for ch in api_user.upper())


def intents_since(read: AuditRead, ids_before: Collection[object]) -> list[dict[str, Any]]:
    return [e for e in read.entries if e.get("event") == "intent" and e.get("id") not in ids_before]


FAULT_MIX: dict[str, Any] = {"rate_5xx": 0.20, "rate_429": 0.05, "rate_drop": 0.05, "latency_ms": 5}
"""docs/reliability.md: 20 % 503, 5 % 429 (Retry-After: 1), 5 % answers lost after the work, 5 ms."""


def write_fleet(repo: DiskRepo, count: int) -> None:
    """The admin and `count` users of every shape (admins, SMTP senders, own-data-only, zones)."""
    repo.write_admin()
    for i in range(count):
        smtp = i % 3 == 0
        repo.write(
            f"app{i:03d}@example.com",
            role="admin" if i % 50 == 0 else "normal",
            operation=i % 2 == 0,
            access={"http_api": True, "smtp": smtp, "own_data_only": i % 5 == 0},
            timezone=["UTC", "Asia/Tokyo", "Europe/Paris"][i % 3],
            description=f"application {i}",
            **({"smtp_senders": [f"app{i:03d}@example.com", f"@app{i:03d}.example.com"]} if smtp else {}),
        )


@contextlib.contextmanager
def busy_cpus(count: int | None = None) -> Iterator[int]:
    """`count` (default: every CPU) busy loops in child processes, as a shared CI runner is busy;
    each is killed by its own pid on the way out."""
    count = os.cpu_count() or 1 if count is None else count
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield count
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
