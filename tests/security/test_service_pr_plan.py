"""The pull request's plan still works with the read-only credential that contract 2.2 asks for
(`role: normal`, `operation: true`, docs/gitops.md): through the real `reconciler` command, with no
user key, as the plan job runs it. It sees every user, attributes drift from the operation log,
never sees a key fingerprint and can write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.fixtures.service import RunningService, new_key

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
READER = "reader@example.com"


def _write(users: Path, api_user: str, **fields: Any) -> None:
    var = "KEY_" + "".join(ch if ch.isalnum() else "_" for ch in api_user.upper())
    data = {"api_user": api_user, "api_key": {"from_env": var}, "role": "normal", **fields}
    with (users / f"{api_user}.yaml").open("w") as handle:
        YAML().dump(data, handle)


def _run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "KEY_"))}
    return subprocess.run(
        [RECONCILER, *args, "--users", str(root / "users")],
        cwd=root,
        env=base | env | {"NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_pr_plan_works_with_a_normal_user_with_operation_authorization(
    service: RunningService, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    reader_key, app_key = new_key(), new_key()
    _write(users, service.admin_user, role="admin", access={"http_api": True})
    _write(users, READER, operation=True, access={"http_api": True, "smtp": False})
    _write(users, "app@example.com", access={"smtp": True}, timezone="Asia/Tokyo")
    admin_env = service.env() | {
        "KEY_ADMIN_EXAMPLE_COM": service.admin_key,
        "KEY_READER_EXAMPLE_COM": reader_key,
        "KEY_APP_EXAMPLE_COM": app_key,
    }
    applied = _run(tmp_path, admin_env, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with service.client() as console:  # someone edits in the console: drift the plan attributes
        console.update_user("app@example.com", {"timezone": "UTC"})
    _write(
        users, "app@example.com", access={"smtp": True}, timezone="Asia/Tokyo", description="billing relay"
    )

    plan_env = service.env() | {"RECONCILER_API_USER": READER, "RECONCILER_API_KEY": reader_key}
    plan = _run(tmp_path, plan_env, "plan", "--detailed-exitcode", "--format", "json")
    comment = _run(tmp_path, plan_env, "plan", "--detailed-exitcode", "--format", "markdown")

    assert plan.returncode == 2, plan.stdout + plan.stderr
    document = json.loads(plan.stdout)
    assert [(c["api_user"], c["action"], [f["field"] for f in c["fields"]]) for c in document["changes"]] == [
        ("app@example.com", "update", ["timezone", "description"])
    ]
    (drift,) = document["changes"][0]["drift"]  # the operation log was readable
    assert drift["changed_by"] == service.admin_user
    assert comment.returncode == 2 and "Changed outside the reconciler (1)" in comment.stdout
    for output in (plan, comment):
        assert all(
            key not in output.stdout + output.stderr for key in (reader_key, app_key, service.admin_key)
        )
    refused = _run(tmp_path, plan_env | {"KEY_APP_EXAMPLE_COM": app_key}, "apply", "--auto-approve")
    assert refused.returncode == 1
