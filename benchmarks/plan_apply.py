"""Benchmarks for issue 4: planning 10,000 declared users against a 10,000-user service, and
applying 1,000 changes against a service with 20 ms injected latency.

    .venv/bin/python benchmarks/plan_apply.py [--users 10000] [--changes 1000] [--latency-ms 20]

The service runs as a separate `reconciler-service run` process (as in production, the client does
not share a GIL with the server). Users are seeded straight into its SQLite file, already carrying
the annotations the reconciler would have written, so the plan is a true no-op.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from reconciler.backend.http import HttpBackend
from reconciler.backend.http.client import ServiceClient
from reconciler.config import Settings
from reconciler.desired import load_users
from reconciler.executor import KeyMaterial, apply_plan, failed
from reconciler.model import UserAttributes
from reconciler.output import render_text
from reconciler.plan import FINGERPRINT_ANNOTATION, KEY_UPDATED_ANNOTATION, Action
from reconciler.run.audit import AuditLog
from reconciler.secrets import ApiKey
from reconciler.workflows.applying import execute
from reconciler.workflows.context import Run, SilentReporter
from reconciler.workflows.keys import fingerprints_of, resolve_keys
from reconciler.workflows.planning import compute_plan, guards_from
from reconciler_service.clock import now
from reconciler_service.keys import FAST_SCRYPT_N, hash_key
from reconciler_service.store import Store, StoredUser

ADMIN = "admin@example.com"
ADMIN_KEY = "benchAdminKey2026"
FP_SECRET = "bench-fingerprint-secret-0123456789abcdef"  # noqa: S105 (a test value, independent of every key)
USER_KEY = "benchUserKey2026"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    url: str
    settings: Settings


def user_yaml(name: str, role: str = "normal", timezone: str = "Asia/Tokyo") -> str:
    http = "true" if role == "admin" else "false"
    smtp = "false" if role == "admin" else "true"
    var = "ADMIN_KEY" if role == "admin" else "USER_KEY"
    return (
        f"api_user: {name}\napi_key:\n  from_env: {var}\nrole: {role}\noperation: false\n"
        f"access:\n  http_api: {http}\n  smtp: {smtp}\n  own_data_only: false\n"
        f"timezone: {timezone}\nlocked: false\ndescription: benchmark user {name}\n"
    )


def write_users(users_dir: Path, names: list[str], timezone: str) -> None:
    users_dir.mkdir(parents=True, exist_ok=True)
    (users_dir / f"{ADMIN}.yaml").write_text(user_yaml(ADMIN, "admin"))
    for name in names:
        (users_dir / f"{name}.yaml").write_text(user_yaml(name, timezone=timezone))


def seed(db: Path, users_dir: Path, secret: bytes) -> None:
    """Insert every declared user as the reconciler would have left it (private store API: this is
    a benchmark fixture, not a code path)."""
    desired = load_users(users_dir)
    stamp = now()
    store = Store(db)
    keys = {ADMIN: ApiKey(ADMIN_KEY)}
    hashes = {k: hash_key(k, FAST_SCRYPT_N) for k in (ADMIN_KEY, USER_KEY)}
    with store._write() as conn:
        for spec in desired.users:
            key = keys.get(spec.api_user, ApiKey(USER_KEY))
            annotations = {
                FINGERPRINT_ANNOTATION: fingerprints_of({"k": key}, secret)["k"],
                KEY_UPDATED_ANNOTATION: stamp,
            }
            attributes = UserAttributes.model_validate(
                spec.model_dump(exclude={"api_user", "api_key"})
            ).model_dump(mode="json")
            user = StoredUser(
                spec.api_user, attributes, annotations, hashes[key.reveal()], stamp, stamp, stamp
            )
            store._insert(conn, user)
    store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_service(db: Path, *extra: str) -> Iterator[Service]:
    port = free_port()
    env = os.environ | {"RECONCILER_SERVICE_ADMIN_KEY": ADMIN_KEY}
    cmd = [
        str(BIN / "reconciler-service"),
        "run",
        "--db",
        str(db),
        "--port",
        str(port),
        "--admin-user",
        ADMIN,
    ]
    proc = subprocess.Popen(
        [*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                break
        url = f"http://127.0.0.1:{port}/api/v2"
        settings = Settings(api_url=url, api_user=ADMIN, api_key=SecretStr(ADMIN_KEY))
        yield Service(url, settings)
    finally:
        proc.terminate()
        proc.wait(10)


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def cli_seconds(args: list[str], cwd: Path, env: dict[str, str], runs: int = 3) -> tuple[float, int]:
    def once() -> int:
        done = subprocess.run(
            [str(BIN / "reconciler"), *args], cwd=cwd, env=env, capture_output=True, check=False
        )
        if done.returncode not in (0, 2):
            sys.stderr.write(done.stderr.decode()[-2000:])
        return done.returncode

    return best_of(runs, once)


def bench_plan(root: Path, count: int) -> list[tuple[str, float, str]]:
    names = [f"user{i:05d}@example.com" for i in range(count - 1)]
    write_users(root / "users", names, "Asia/Tokyo")
    seed(root / "service.db", root / "users", FP_SECRET.encode())
    rows = []
    with running_service(root / "service.db") as svc:
        env = os.environ | {
            "RECONCILER_API_URL": svc.url,
            "RECONCILER_API_USER": ADMIN,
            "RECONCILER_API_KEY": ADMIN_KEY,
            "RECONCILER_FINGERPRINT_SECRET": FP_SECRET,
            "ADMIN_KEY": ADMIN_KEY,
            "USER_KEY": USER_KEY,
        }
        validate_s, code = cli_seconds(["validate"], root, env)
        assert code == 0, "validate failed"
        plan_s, code = cli_seconds(["plan"], root, env)
        assert code == 0, f"plan was not a no-op (exit {code})"
        rows += [
            (f"reconciler validate ({count} files, CLI)", validate_s, "reference"),
            (f"reconciler plan ({count} vs {count}, CLI, no-op)", plan_s, "reference"),
            ("plan beyond validate", plan_s - validate_s, "target <= 1.5 s"),
        ]
        rows += _plan_breakdown(root / "users", svc, env)
    return rows


def _plan_breakdown(users_dir: Path, svc: Service, env: dict[str, str]) -> list[tuple[str, float, str]]:
    desired = load_users(users_dir)
    with ServiceClient.from_settings(svc.settings) as client:
        list_s, live = best_of(3, client.list_users)
    resolve_s, resolved = best_of(3, lambda: resolve_keys(desired, env=env))
    guards = guards_from(svc.settings)

    def diff() -> Any:
        return compute_plan(desired, live, resolved, settings=svc.settings, guards=guards)

    diff_s, plan = best_of(3, diff)
    assert plan.empty
    render_s, _ = best_of(3, lambda: render_text(plan))
    return [
        ("  list live users (HTTP, 100 per page)", list_s, ""),
        ("  resolve keys + keyed fingerprints", resolve_s, ""),
        ("  diff + safety checks (pure)", diff_s, ""),
        ("  render text", render_s, ""),
    ]


def bench_apply(
    root: Path, changes: int, latency_ms: float, concurrency: int, *, audited: bool = False
) -> list[tuple[str, float, str]]:
    """Apply `changes` one-field updates; with `audited`, the way the CLI does it: an fsynced intent
    line in the audit log before each write and an outcome line after it (workflows.applying.execute)."""
    names = [f"app{i:05d}@example.com" for i in range(changes)]
    root = root / ("audited" if audited else "bare")
    users_dir = root / "apply-users"
    write_users(users_dir, names, "Asia/Tokyo")
    settings = Settings(
        api_user=ADMIN,
        api_key=SecretStr(ADMIN_KEY),
        concurrency=concurrency,
        fingerprint_secret=SecretStr(FP_SECRET),
    )
    seed(root / "apply.db", users_dir, FP_SECRET.encode())
    write_users(users_dir, names, "UTC")  # every user changes one field
    ideal = changes * latency_ms / 1000 / concurrency
    with running_service(root / "apply.db", "--latency-ms", str(latency_ms)) as svc:
        settings = settings.model_copy(update={"api_url": svc.url})
        desired = load_users(users_dir)
        env = {"ADMIN_KEY": ADMIN_KEY, "USER_KEY": USER_KEY}
        with ServiceClient.from_settings(settings) as client:
            live = client.list_users()
            plan = compute_plan(
                desired, live, resolve_keys(desired, env=env), settings=settings, guards=guards_from(settings)
            )
            assert plan.count(Action.UPDATE) == changes, plan.count(Action.UPDATE)
            start = time.perf_counter()
            backend = HttpBackend(client)
            if audited:
                run = Run(settings, users_dir, SilentReporter(), backend_opener=lambda _settings: backend)
                audit = AuditLog(root / "state", {"actor": "bench"})
                outcomes = execute(run, plan, KeyMaterial({}, {}), audit=audit)
            else:
                outcomes = apply_plan(plan, backend, KeyMaterial({}, {}), concurrency=concurrency)
            elapsed = time.perf_counter() - start
    assert not failed(outcomes)
    target = 1.25 * ideal
    return [
        (
            f"apply {changes} updates, {latency_ms:g} ms latency, concurrency {concurrency}"
            + (", write-ahead audit" if audited else ""),
            elapsed,
            f"target <= {target:.3f} s (1.25 x {ideal:.3f} s)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        rows = bench_plan(root, args.users)
        for audited in (False, True):
            rows += bench_apply(root, args.changes, args.latency_ms, args.concurrency, audited=audited)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'measurement':<78} {'seconds':>8}  note")
    for name, seconds, note in rows:
        print(f"{name:<78} {seconds:>8.3f}  {note}")


if __name__ == "__main__":
    main()
