"""`reconciler status`: desired vs live, drift, lock holder, audit tail; each part on its own."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.run.lock import lock_path, reconcile_lock
from tests.ops.conftest import Repo


def test_status_in_sync_shows_counts_free_lock_and_audit(repo: Repo) -> None:
    repo.write("a@example.com", access={"smtp": True})
    assert repo.run("apply", "--auto-approve").code == 0
    shown = repo.run("status")
    assert shown.code == 0, shown.output
    assert "Desired: 2 user(s)" in shown.stdout
    assert "Live:    2 user(s)" in shown.stdout
    assert "Drift:   no" in shown.stdout
    assert "Lock:    free" in shown.stdout
    assert re.search(r"^  \S+ \S+\s+\S+\s+create \+key\s+a@example\.com\s+ok$", shown.stdout, re.M), (
        shown.stdout
    )


def test_status_reports_drift_without_changing_anything(repo: Repo) -> None:
    repo.write("a@example.com", timezone="UTC")
    shown = repo.run("status")
    assert "Drift:   YES: Plan: 1 to create" in shown.stdout
    assert "a@example.com" not in repo.live()
    assert "Audit:   no entries" in shown.stdout


def test_status_names_the_lock_holder_and_flags_a_stale_lock(repo: Repo) -> None:
    path = lock_path(repo.root / ".reconciler", repo.service.base_url)
    path.parent.mkdir()
    started = (datetime.now(UTC) - timedelta(hours=3)).isoformat(timespec="seconds")
    holder = {
        "holder": "ci-bot",
        "host": "runner-7",
        "pid": 4242,
        "started_at": started,
        "command": "reconcile",
        "service": repo.service.base_url,
    }
    path.write_text(json.dumps(holder))
    shown = repo.run("status")
    assert f"Lock:    {repo.service.base_url} held by ci-bot on runner-7 (pid 4242, reconcile" in shown.stdout
    assert "STALE" in shown.stdout
    assert socket.gethostname() not in shown.stdout.split("Lock:")[1].splitlines()[0]


def test_status_still_shows_lock_and_audit_when_users_are_invalid(repo: Repo) -> None:
    (repo.users / "broken@example.com.yaml").write_text("api_user: [\n")
    shown = repo.run("status")
    assert shown.code == 1
    assert "Desired: INVALID" in shown.stdout
    assert "Lock:    free" in shown.stdout


def test_status_when_the_service_is_down(repo: Repo) -> None:
    env = repo.env() | {"RECONCILER_API_URL": "http://127.0.0.1:9/api/v2", "RECONCILER_RETRIES": "0"}
    shown = repo.run("status", env=env)
    assert shown.code == 1
    assert "Live:    UNAVAILABLE" in shown.stdout
    assert "Lock:    free" in shown.stdout


def test_status_shows_a_gateways_mail_lock_too(repo: Repo, tmp_path: Path) -> None:
    state = repo.root / ".reconciler"
    with reconcile_lock(state, f"mail:{tmp_path / 'mail'}", "render"):
        shown = repo.run("status")
    assert f"Lock:    mail:{tmp_path / 'mail'} held by" in shown.stdout
    assert ", render, since" in shown.stdout


def test_status_fails_on_a_key_that_is_present_but_unusable(repo: Repo) -> None:
    repo.write("a@example.com")
    shown = repo.run("status", env=repo.env() | {repo.var("a@example.com"): "short"})
    assert shown.code == 1
    assert "Keys:    UNUSABLE:" in shown.stdout
    assert "a@example.com.yaml" in shown.stdout
