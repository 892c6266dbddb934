"""A fleet of gateways reports what it serves: two gateways render from their own checkouts and
report to the real embedded service; `status --format json` shows the one behind, and
`reconcile --wait-gateways` names it until it catches up. The audit log records each render."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.run.audit import AuditLog
from tests.engine.conftest import Repo, Result
from tests.fixtures.service import RunningService, new_key


def _gateway_user(name: str) -> str:
    """Each gateway reports with its own `normal` API user, bound to its name (docs/contract.md)."""
    return f"gw-{name}@example.com"


def _render(repo: Repo, checkout: Path, name: str) -> Result:
    env = repo.env() | {
        "RECONCILER_API_USER": _gateway_user(name),
        "RECONCILER_API_KEY": repo.keys[_gateway_user(name)],
        "RECONCILER_GATEWAY_NAME": name,
        "RECONCILER_MAIL_DIR": str(checkout / "mail"),
        "RECONCILER_MAIL_FILE_GROUP": "root",
    }
    return repo.run("render", "--users", str(checkout / "users"), "--no-reload", env=env)


def _commit(repo: Repo, message: str) -> None:
    """The users repo is a git checkout: gateways report its commit, status counts how far behind."""
    git = ["git", "-C", str(repo.root), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "users"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)


def _checkout(repo: Repo, where: Path) -> Path:
    """A gateway's own copy of the users repo, as `git pull` would leave it."""
    shutil.rmtree(where / "users", ignore_errors=True)
    shutil.copytree(repo.users, where / "users")
    return where


@pytest.fixture
def repo(tmp_path: Path, service: RunningService) -> Repo:
    (tmp_path / "users").mkdir()
    repo = Repo(tmp_path, service)
    repo.write(service.admin_user, key=service.admin_key, role="admin", access={"http_api": True})
    return repo


def test_two_gateways_report_and_status_shows_the_one_behind(repo: Repo, tmp_path: Path) -> None:
    for name in ("mx1", "mx2"):  # normal users: reporting needs no admin, only the binding
        repo.write(_gateway_user(name), access={"http_api": True})
    repo.write("app@example.com", access={"smtp": True})
    assert repo.run("apply", "--auto-approve").code == 0
    with repo.service.client() as admin:  # an admin binds each gateway's user to its name
        for name in ("mx1", "mx2"):
            admin.update_user(_gateway_user(name), {}, annotations={"reconciler/gateway": name})
    _commit(repo, "app")
    mx1, mx2 = _checkout(repo, tmp_path / "mx1"), _checkout(repo, tmp_path / "mx2")
    assert _render(repo, mx1, "mx1").code == 0
    assert _render(repo, mx2, "mx2").code == 0

    # A new SMTP user is applied; only mx1 pulls and renders it.
    repo.write("new@example.com", access={"smtp": True}, key=new_key())
    assert repo.run("apply", "--auto-approve").code == 0
    _commit(repo, "new")
    assert _render(repo, _checkout(repo, mx1), "mx1").code == 0

    status = repo.run("status", "--format", "json")
    assert status.code == 0, status.output
    gateways = {g["name"]: g for g in json.loads(status.stdout)["gateways"]}
    assert {name: g["behind"] for name, g in gateways.items()} == {"mx1": False, "mx2": True}
    assert gateways["mx1"]["result"] == "ok"
    assert set(gateways["mx1"]) >= {"name", "commit", "desired_digest", "result", "reported_at", "behind"}
    assert (gateways["mx1"]["commits_behind"], gateways["mx2"]["commits_behind"]) == (0, 1)
    assert "mx2: BEHIND by 1 commit(s), last result ok" in repo.run("status").stdout

    waited = repo.run("reconcile", "--auto-approve", "--wait-gateways", "1s")
    assert waited.code == 1
    assert "gateways still behind after 1 s: mx2" in waited.stderr

    assert _render(repo, _checkout(repo, mx2), "mx2").code == 0
    assert repo.run("reconcile", "--auto-approve", "--wait-gateways", "5s").code == 0

    entries = [e for e in AuditLog(mx2 / ".reconciler", {}).tail(10) if e.get("action") == "mail"]
    assert [e["outcome"] for e in entries] == ["ok", "ok"]
    assert entries[-1]["changed"] and entries[-1]["keys_hashed"] == 1
