"""`reconciler-service run` (the embedded service's own command) as a real subprocess, and
`reconciler live` against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.backend.http.client import ServiceClient
from reconciler.secrets import ApiKey
from reconciler_service.server import free_port
from tests.fixtures.service import RunningService, new_key

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
SERVICE = str(Path(sys.executable).with_name("reconciler-service"))


@dataclass
class Subprocess:
    proc: subprocess.Popen[str]
    url: str
    key: str
    smtp_port: int

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RECONCILER_API_URL": self.url,
            "RECONCILER_API_USER": "root@example.com",
            "RECONCILER_API_KEY": self.key,
            "RECONCILER_FINGERPRINT_SECRET": "cli-fingerprint-secret-0123456789abcdef",
        }


def spawn(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str, str]:
    """Start `reconciler-service run`, wait for its ready line; (process, url, admin key, line)."""
    key, port = new_key(), free_port()
    env = {**os.environ, "RECONCILER_SERVICE_ADMIN_KEY": key}
    args = ["--db", str(tmp_path / "s.sqlite"), "--port", str(port), *extra]
    proc = subprocess.Popen(
        [SERVICE, "run", *args, "--admin-user", "root@example.com"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()  # blocks until the service says it listens
    assert ready.startswith(f"listening on http://127.0.0.1:{port}/api/v2"), ready
    return proc, f"http://127.0.0.1:{port}/api/v2", key, ready


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Subprocess]:
    smtp_port = free_port()
    proc, url, key, ready = spawn(tmp_path, "--smtp-port", str(smtp_port))
    assert f"127.0.0.1:{smtp_port}" in ready
    yield Subprocess(proc, url, key, smtp_port)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_live_lists_users_of_a_real_service_process(served: Subprocess, tmp_path: Path) -> None:
    users_dir = tmp_path / "users"
    out = subprocess.run(
        [RECONCILER, "live", "--format", "json", "--users", str(users_dir)],
        env=served.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    users = json.loads(out.stdout)["api_users"]
    assert [u["api_user"] for u in users] == ["root@example.com"]
    assert users[0]["role"] == "admin" and users[0]["access"]["http_api"] is True
    table = subprocess.run(
        [RECONCILER, "live", "--users", str(users_dir)],
        env=served.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert table.returncode == 0 and "root@example.com  admin" in table.stdout


def test_sigterm_stops_cleanly_and_nothing_printed_a_key(served: Subprocess) -> None:
    served.proc.send_signal(signal.SIGTERM)
    stdout, stderr = served.proc.communicate(timeout=10)
    assert served.proc.returncode == 0
    assert served.key not in stdout + stderr


def test_live_with_bad_key_fails_with_exit_1(served: Subprocess, tmp_path: Path) -> None:
    env = {**served.env(), "RECONCILER_API_KEY": "wrongKey123"}
    out = subprocess.run(
        [RECONCILER, "live", "--users", str(tmp_path / "users")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "HTTP 401" in out.stderr and "wrongKey123" not in out.stderr


def test_admin_key_comes_only_from_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_SERVICE_ADMIN_KEY"}
    out = subprocess.run(
        [SERVICE, "run", "--db", str(tmp_path / "s.sqlite"), "--admin-user", "a@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert out.returncode == 1
    assert "RECONCILER_SERVICE_ADMIN_KEY" in out.stderr


def test_live_against_the_fixture_service(service: RunningService, tmp_path: Path) -> None:
    out = subprocess.run(
        [RECONCILER, "live", "--format", "json", "--users", str(tmp_path / "users")],
        env={**os.environ, **service.env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [u["api_user"] for u in json.loads(out.stdout)["api_users"]] == [service.admin_user]


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


def test_prefork_workers_share_the_port_and_database_and_stop_together(tmp_path: Path) -> None:
    proc, url, key, _ = spawn(tmp_path, "--workers", "2")
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2
        with ServiceClient(url, "root@example.com", SecretStr(key)) as client, ThreadPoolExecutor(8) as pool:
            names = [f"w{i}@example.com" for i in range(40)]
            created = list(
                pool.map(lambda n: client.create_user(n, {"role": "normal"}, ApiKey(new_key()), {}), names)
            )
            assert {u.api_user for u in created} == set(names)
            assert len(client.list_users()) == 41
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.returncode == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_tool_has_no_service_run_any_more(tmp_path: Path) -> None:
    """The service is its own distribution: `reconciler service run` was renamed (CHANGELOG)."""
    out = subprocess.run(
        [RECONCILER, "service", "run", "--db", str(tmp_path / "s.sqlite"), "--admin-user", "a@example.com"],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert out.returncode != 0
    assert "No such command 'run'" in out.stderr
    assert not (tmp_path / "s.sqlite").exists()


def test_the_service_command_explains_itself_with_an_example() -> None:
    shown = subprocess.run([SERVICE, "run", "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert "reconciler-service run" in shown.stdout.split("Example:")[1]
    assert "RECONCILER_SERVICE_ADMIN_KEY" in shown.stdout
