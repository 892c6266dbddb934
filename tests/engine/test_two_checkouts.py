"""Two checkouts (say a CI runner and a laptop), each with its own users/ and state directory, apply
to one service at the same moment, as separate `reconciler` processes. The service's lease keeps
them apart: the service's operation log shows each run's writes as one unbroken block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML

from tests.fixtures.service import RunningService

ROUNDS = 20
PER_WAVE = 4
APPS = ("a@example.com", "b@example.com", "c@example.com")


def _checkout(root: Path, service: RunningService, description: str) -> Path:
    users = root / "users"
    users.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {
        service.admin_user: {"role": "admin", "access": {"http_api": True}},
        **{
            name: {"role": "normal", "access": {"http_api": True}, "description": description}
            for name in APPS
        },
    }
    for name, fields in files.items():
        with (users / f"{name}.yaml").open("w") as handle:
            YAML().dump(
                {"api_user": name, "api_key": {"from_env": "KEY_" + name.split("@")[0].upper()}, **fields},
                handle,
            )
    return root


def _env(service: RunningService, actor: str) -> dict[str, str]:
    keys = {"KEY_" + name.split("@")[0].upper(): f"k1{name[0]}Key0000000000" for name in APPS}
    keys["KEY_" + service.admin_user.split("@")[0].upper()] = service.admin_key
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "GITHUB_"))}
    return base | service.env() | keys | {"RECONCILER_ACTOR": actor, "NO_COLOR": "1"}


def _apply(checkout: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", "--lock-timeout", "60s"]
    return subprocess.Popen(
        command, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _reconciler_runs(service: RunningService) -> list[str]:
    """The run id of every write the reconciler made, oldest first."""
    answer = requests.get(
        service.base_url + "/operations",
        params={"limit": 1000},
        auth=(service.admin_user, service.admin_key),
        timeout=10,
    )
    operations = [o for o in reversed(answer.json()["operations"]) if o["source"] == "reconciler"]
    return [o["run"] for o in operations]


def test_concurrent_applies_from_two_checkouts_never_interleave(tmp_path: Path, start_service: Any) -> None:
    service: RunningService = start_service(smtp=False, latency_ms=5)
    laptop = _checkout(tmp_path / "laptop", service, "from the laptop")
    runner = _checkout(tmp_path / "runner", service, "from CI")
    envs = {laptop: _env(service, "alice"), runner: _env(service, "ci-bot")}
    # 20 rounds of the two racing, run as waves of several rounds at once: more contenders per
    # lease, and a few seconds instead of half a minute.
    for wave in range(ROUNDS // PER_WAVE):
        processes = [_apply(checkout, env) for _ in range(PER_WAVE) for checkout, env in envs.items()]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, f"wave {wave}: {out}\n{err}"
        # The last run saw the one before it and set everything to its own users/.
        descriptions = {u["description"] for u in _live(service) if u["api_user"] in APPS}
        assert len(descriptions) == 1, f"wave {wave}: users hold values from both checkouts"
    runs = _reconciler_runs(service)
    blocks = [run for i, run in enumerate(runs) if i == 0 or runs[i - 1] != run]
    assert len(blocks) == len(set(blocks)), "the writes of two runs interleaved"
    assert len(set(blocks)) >= ROUNDS // PER_WAVE * 2  # runs did write, from both checkouts


def _live(service: RunningService) -> list[dict[str, Any]]:
    answer = requests.get(
        service.base_url + "/api_users", auth=(service.admin_user, service.admin_key), timeout=10
    )
    users: list[dict[str, Any]] = answer.json()["api_users"]
    return users
