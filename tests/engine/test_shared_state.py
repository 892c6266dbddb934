"""One truth across machines (contract 2.1), through the CLI against the real embedded service: the
service's lease, conditional writes, the operation log behind `history` and drift attribution, and
the reconciler's own key rotation settling by itself."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.backend.http import HttpBackend
from reconciler.errors import LeaseLost
from reconciler.run.lease import LEASE_NAME, run_lock
from tests.engine.conftest import Repo, Result
from tests.engine.markdown import render_html
from tests.fixtures.service import RunningService, new_key

APPS = ("a@example.com", "b@example.com", "c@example.com")
OTHER_RUN = {"holder": "ci-bot", "host": "runner-7", "pid": 4242, "command": "reconcile", "ttl_seconds": 60}


def _http(service: RunningService, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A plain request as the admin: what a console or another machine sends (no reconciler headers)."""
    auth = kwargs.pop("auth", (service.admin_user, service.admin_key))
    return requests.request(method, service.base_url + path, auth=auth, timeout=10, **kwargs)


def _hold_lease(service: RunningService, **overrides: Any) -> dict[str, Any]:
    taken = _http(service, "PUT", f"/leases/{LEASE_NAME}", json={**OTHER_RUN, **overrides})
    assert taken.status_code == 201, taken.text
    lease: dict[str, Any] = taken.json()
    return lease


def _seed(repo: Repo, names: tuple[str, ...] = APPS, **fields: Any) -> None:
    for name in names:
        repo.write(name, access={"http_api": True}, timezone="Asia/Tokyo", **fields)
    assert repo.run("apply", "--auto-approve").code == 0


def _operations(service: RunningService, **params: Any) -> list[dict[str, Any]]:
    answer = _http(service, "GET", "/operations", params={"limit": 1000, **params})
    assert answer.status_code == 200
    operations: list[dict[str, Any]] = answer.json()["operations"]
    return operations


@contextmanager
def _in_background(run: Callable[[], Result]) -> Iterator[list[Result]]:
    """Run a CLI invocation on a thread (the test's own thread plays the other party)."""
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(run()))
    thread.start()
    try:
        yield results
    finally:
        thread.join(timeout=60)


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the lease ----------------------------------------------------------------------------------------


def test_a_second_run_anywhere_fails_fast_naming_holder_host_command_and_since(repo: Repo) -> None:
    repo.write("a@example.com")
    _hold_lease(repo.service)
    started = time.monotonic()
    result = repo.run("apply", "--auto-approve")
    assert result.code == 1
    assert (
        "another run holds the service lease 'reconcile': ci-bot on runner-7 (pid 4242, reconcile, since "
        in (result.stderr)
    )
    assert "--lock-timeout" in result.stderr and "--force-unlock" in result.stderr
    assert time.monotonic() - started < 5
    assert "a@example.com" not in repo.live()


def test_lock_timeout_waits_for_the_other_run_to_release(repo: Repo) -> None:
    repo.write("a@example.com")
    lease = _hold_lease(repo.service)
    release = threading.Timer(
        0.5,
        lambda: _http(
            repo.service, "DELETE", "/leases/reconcile", headers={"If-Match": f'"{lease["token"]}"'}
        ),
    )
    release.start()
    result = repo.run("apply", "--auto-approve", "--lock-timeout", "30s")
    release.join()
    assert result.code == 0, result.output
    assert "a@example.com" in repo.live()


def test_force_unlock_breaks_the_lease_says_whose_and_the_service_logs_it(repo: Repo) -> None:
    repo.write("a@example.com")
    _hold_lease(repo.service)
    result = repo.run("apply", "--auto-approve", "--force-unlock")
    assert result.code == 0, result.output
    assert "--force-unlock broke the service lease 'reconcile', held by ci-bot on runner-7 (pid 4242" in (
        result.stderr
    )
    forced = [o for o in _operations(repo.service) if o["action"] == "lease_force"]
    assert len(forced) == 1 and forced[0]["fields"] == ["reconcile"]
    assert _http(repo.service, "GET", "/leases/reconcile").status_code == 404  # released at the end


def test_status_shows_the_lease(repo: Repo) -> None:
    assert "Lease:   'reconcile' on the service is free" in repo.run("status").stdout
    _hold_lease(repo.service)
    shown = repo.run("status").stdout
    assert "Lease:   'reconcile' held by ci-bot on runner-7 (pid 4242, reconcile, since " in shown


def test_a_run_whose_lease_is_broken_starts_no_new_write_and_exits_1_saying_so(repo: Repo) -> None:
    names = tuple(f"u{i}@example.com" for i in range(6))
    _seed(repo, names)
    for name in names:
        repo.write(name, access={"http_api": True}, timezone="UTC")
    repo.service.faults.latency_ms = 60
    env = repo.env() | {"RECONCILER_CONCURRENCY": "1"}
    with _in_background(lambda: repo.run("apply", "--auto-approve", env=env)) as results:
        _wait_for(
            # The run's own first write (seeding's key-time update of u0 carries no timezone).
            lambda: any(
                o["action"] == "update" and "timezone" in o["fields"]
                for o in _operations(repo.service, api_user="u0@example.com")
            )
        )
        _http(repo.service, "DELETE", "/leases/reconcile?force=true")
        broken_at = datetime.now(UTC)
    result = results[0]
    assert result.code == 1
    assert "the run lost its lease on the service" in result.stderr
    assert "no write started after that" in result.stderr
    after = [o for o in _operations(repo.service, since=broken_at.isoformat()) if o["source"] == "reconciler"]
    assert len(after) <= 1  # at most the write that was already in flight
    assert sum(1 for u in repo.live().values() if u.timezone == "UTC") < len(names)


def test_a_service_without_leases_falls_back_to_the_local_lock_with_one_warning(repo: Repo) -> None:
    repo.service.faults.no_shared_state = True
    repo.write("a@example.com")
    result = repo.run("apply", "--auto-approve")
    assert result.code == 0, result.output
    assert result.stderr.count("runs on other machines are not excluded") == 1
    assert "a@example.com" in repo.live()
    repo.write("a@example.com", timezone="UTC")
    assert (
        repo.run("plan", "--detailed-exitcode").code == 2
    )  # no operation log: the plan is still made, without attribution


# --- conditional writes ---------------------------------------------------------------------------------


def test_a_console_edit_during_a_slow_apply_survives_and_that_users_outcome_says_why(repo: Repo) -> None:
    names = tuple(f"u{i}@example.com" for i in range(6))
    _seed(repo, names)
    for name in names:
        repo.write(name, access={"http_api": True}, timezone="UTC")
    repo.service.faults.latency_ms = 60
    env = repo.env() | {"RECONCILER_CONCURRENCY": "1"}
    last = names[-1]
    start = datetime.now(UTC).isoformat()
    with _in_background(lambda: repo.run("apply", "--auto-approve", env=env)) as results:
        # Once the run's first write landed, its plan was made: the console edit comes after it.
        _wait_for(lambda: bool(_operations(repo.service, api_user=names[0], since=start)))
        console = _http(repo.service, "PATCH", f"/api_users/{last}", json={"timezone": "Europe/Paris"})
        assert console.status_code == 200
    result = results[0]
    assert result.code == 1
    assert "changed since the plan" in _outcome_line(result, last)
    assert "Run `reconciler plan` to see their new state" in result.stderr
    live = repo.live()
    assert live[last].timezone == "Europe/Paris"  # the console edit survived
    assert all(live[n].timezone == "UTC" for n in names[:-1])
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 2
    assert '"Europe/Paris" -> "UTC"' in planned.stdout
    assert f"{last}  timezone: changed by {repo.service.admin_user} via the API at " in planned.stdout


def _outcome_line(result: Result, api_user: str) -> str:
    # Outcome lines stream as `[ n/N] api_user  action  outcome`.
    rows = [line.partition("] ")[2] for line in result.stdout.splitlines() if line.startswith("[")]
    return next(row for row in rows if row.startswith(api_user) and "update" in row)


def test_a_412_is_its_own_outcome_never_retried(repo: Repo) -> None:
    """A saved plan applied after a console edit is refused as stale (exit 3), and a plan whose
    version is old at write time gets exactly one PATCH attempt: the service logs no write."""
    _seed(repo, ("a@example.com",))
    repo.write("a@example.com", access={"http_api": True}, timezone="UTC")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    saved = json.loads((repo.root / "plan.json").read_text())
    [change] = [c for c in saved["changes"] if c["api_user"] == "a@example.com"]
    assert change["version"] == repo.live()["a@example.com"].version
    _http(repo.service, "PATCH", "/api_users/a@example.com", json={"description": "console"})
    stale = repo.run("apply", "plan.json")
    assert stale.code == 1 and "live users changed since the plan: a@example.com" in stale.stderr
    assert repo.live()["a@example.com"].timezone == "Asia/Tokyo"


# --- the operation log -----------------------------------------------------------------------------------


def _git_checkout(repo: Repo) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo.root), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "users")
    return git("rev-parse", "HEAD")


def test_history_lists_the_console_edit_and_the_reconcilers_writes_with_actor_and_commit(repo: Repo) -> None:
    for name in APPS:
        repo.write(name, access={"http_api": True}, timezone="Asia/Tokyo")
    commit = _git_checkout(repo)
    env = repo.env() | {"RECONCILER_ACTOR": "carol", "GITHUB_RUN_ID": "4711"}
    assert repo.run("apply", "--auto-approve", env=env).code == 0
    _http(repo.service, "PATCH", "/api_users/b@example.com", json={"timezone": "UTC"})
    shown = repo.run("history", "--format", "json")
    assert shown.code == 0
    operations = json.loads(shown.stdout)["operations"]
    console = operations[0]
    assert (console["action"], console["api_user"], console["fields"]) == (
        "update",
        "b@example.com",
        ["timezone"],
    )
    assert (console["source"], console["actor"], console["commit"]) == ("api", None, None)
    assert console["actor_api_user"] == repo.service.admin_user
    created = {
        o["api_user"]: o for o in operations if o["action"] == "create" and o["source"] == "reconciler"
    }
    assert set(created) == set(APPS)
    assert {(o["actor"], o["commit"], o["run"]) for o in created.values()} == {("carol", commit, "4711")}
    header, *text = repo.run("history", "--api-user", "b@example.com", "--since", "1h").stdout.splitlines()
    assert header.split() == ["WHEN", "ACTION", "API", "USER", "BY", "FIELDS"]
    assert "update" in text[0] and "timezone" in text[0] and "via the API" in text[0]
    assert any("create" in line and f"(carol, commit {commit[:12]}, run 4711)" in line for line in text)
    assert all("a@example.com" not in line for line in text)
    # The reconciler's own fingerprint bookkeeping is no row of its own; --format json keeps it.
    assert not any(line.split()[1] == "update" and line.rstrip().endswith("  -") for line in text)
    assert len({line.index("b@example.com") for line in text}) == 1  # aligned columns


def test_plan_names_who_made_a_drift_in_text_markdown_and_json(repo: Repo) -> None:
    alice_key = new_key()
    repo.write("alice@example.com", key=alice_key, role="admin", access={"http_api": True})
    _seed(repo, ("a@example.com",), locked=False)
    changed = _http(
        repo.service,
        "PATCH",
        "/api_users/a@example.com",
        json={"timezone": "UTC", "locked": True},
        auth=("alice@example.com", alice_key),
    )
    assert changed.status_code == 200
    text = repo.run("plan", "--detailed-exitcode")
    assert text.code == 2
    assert "a@example.com  timezone: changed by alice@example.com via the API at " in text.stdout
    assert "a@example.com  locked: changed by alice@example.com via the API at " in text.stdout
    markdown = repo.run("plan", "--detailed-exitcode", "--format", "markdown").stdout
    assert "#### Changed outside the reconciler (2)" in markdown
    # As GitHub shows it (the Markdown source escapes the text: reconciler/safetext.py).
    assert "<code>a@example.com</code> timezone: changed by alice@example.com via the API at " in render_html(
        markdown
    )
    document = json.loads(repo.run("plan", "--detailed-exitcode", "--format", "json").stdout)
    drift = {d["field"]: d for c in document["changes"] for d in c["drift"]}
    assert set(drift) == {"timezone", "locked"}
    assert drift["timezone"]["changed_by"] == "alice@example.com" and drift["timezone"]["via"] == "api"


def test_a_field_the_reconciler_wrote_last_is_a_desired_change_not_drift(repo: Repo) -> None:
    _seed(repo, ("a@example.com",))
    repo.write("a@example.com", access={"http_api": True}, timezone="UTC")
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 2 and "changed by" not in planned.stdout


# --- the reconciler's own key -------------------------------------------------------------------------------


def _rotate_own_key(repo: Repo) -> str:
    """users/ declares a new key for the reconciler's user; RECONCILER_API_KEY still holds the old."""
    new = new_key()
    repo.write(repo.service.admin_user, key=new, role="admin", access={"http_api": True})
    repo.keys[repo.service.admin_user] = new
    return new


def test_a_lost_answer_on_the_own_key_patch_converges_without_the_runbook(repo: Repo) -> None:
    assert repo.run("apply", "--auto-approve").code == 0
    new = _rotate_own_key(repo)
    repo.service.faults.drop_next_write_for = {repo.service.admin_user}
    result = repo.run("apply", "--auto-approve")
    assert result.code == 0, result.output
    assert not repo.service.faults.drop_next_write_for  # the answer really was lost
    with repo.service.client(api_key=new) as client:
        assert client.get_user(repo.service.admin_user) is not None
    # The next run still has the old RECONCILER_API_KEY: it says so and goes on with the new key.
    again = repo.run("plan", "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "the configured key of admin@example.com (RECONCILER_API_KEY) is refused" in again.stderr


def test_a_rerun_after_a_rotation_that_died_continues_with_the_declared_key(repo: Repo) -> None:
    assert repo.run("apply", "--auto-approve").code == 0
    new = _rotate_own_key(repo)
    # The earlier run changed the key and died before anything else.
    changed = _http(repo.service, "PATCH", f"/api_users/{repo.service.admin_user}", json={"api_key": new})
    assert changed.status_code == 200
    result = repo.run("apply", "--auto-approve")
    assert result.code == 0, result.output
    assert "the key its file in users/ declares is accepted" in result.stderr
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_a_failed_renewal_loses_the_lease_so_no_write_starts(repo: Repo, tmp_path: Path) -> None:
    with (
        repo.service.client() as client,
        run_lock(HttpBackend(client), tmp_path / "state", repo.service.base_url, "apply", ttl=3) as held,
    ):
        assert held.kind == "lease" and client.lease_lost is None
        _http(repo.service, "DELETE", "/leases/reconcile?force=true")  # someone broke it
        _wait_for(lambda: client.lease_lost is not None, timeout=5)  # the next renewal (after 1 s) fails
        assert "expired or was broken" in (client.lease_lost or "")
        with pytest.raises(LeaseLost, match="not sent"):
            client.update_user(repo.service.admin_user, {"description": "x"})


def test_a_lost_answer_to_the_lease_put_is_settled_in_the_same_run(repo: Repo) -> None:
    # The service takes the lease but the answer never arrives: the client's retry meets a lease
    # held by this very process. The run breaks its own orphan and goes on, instead of failing
    # "held" (and every later run until the TTL runs out).
    repo.write("lost-lease@example.com")
    repo.service.faults.drop_next_lease_put = {LEASE_NAME}
    result = repo.run("apply", "--auto-approve")
    assert result.code == 0, result.output
    assert not repo.service.faults.drop_next_lease_put  # the answer really was lost
    with repo.service.client() as client:
        assert client.get_lease(LEASE_NAME) is None  # released at the end, as always
    assert repo.run("plan", "--detailed-exitcode").code == 0
