"""Scenarios through the CLI against the real embedded service over loopback HTTP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from reconciler.errors import LockHeld
from reconciler.run.lock import lock_path, reconcile_lock
from reconciler.secrets import ApiKey
from tests.engine.conftest import Repo
from tests.fixtures.service import new_key

APPS = ("a@example.com", "b@example.com", "c@example.com")


def seed(repo: Repo, names: tuple[str, ...] = APPS) -> None:
    for name in names:
        repo.write(name, access={"http_api": True, "smtp": True}, timezone="Asia/Tokyo")
    assert repo.run("apply", "--auto-approve").code == 0


def test_create_all_then_nothing_to_do(repo: Repo) -> None:
    for name in APPS:
        repo.write(name, access={"smtp": True}, description=f"app {name}")
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 2
    assert "+ create a@example.com" in planned.stdout
    applied = repo.run("apply", "--auto-approve")
    assert applied.code == 0, applied.output
    assert "4 of 4 changes applied" in applied.stdout  # 3 creates + the admin's first key record
    live = repo.live()
    assert live["b@example.com"].description == "app b@example.com"
    assert live["b@example.com"].access.smtp is True
    again = repo.run("plan", "--detailed-exitcode")
    assert (again.code, again.stdout.strip()) == (0, "No changes. The service matches users/.")
    assert repo.run("apply", "--auto-approve").stdout.strip() == "No changes to the service."


def test_edit_one_field_updates_only_that_field(repo: Repo) -> None:
    seed(repo)
    repo.write("b@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 2
    assert '~ timezone:  "Asia/Tokyo" -> "UTC"' in planned.stdout
    assert "Plan: 0 to create, 1 to update (0 key changes)" in planned.stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert repo.live()["b@example.com"].timezone == "UTC"
    assert repo.run("plan", "--detailed-exitcode").code == 0


def _can_login(repo: Repo, name: str, key: str) -> bool:
    with repo.service.client(name, key, retries=0) as client:
        try:
            client.get_user(name)
        except Exception:
            return False
    return True


def test_key_changed_in_yaml_is_applied_without_showing_it(repo: Repo) -> None:
    seed(repo)
    old = repo.keys["a@example.com"]
    repo.keys["a@example.com"] = new = new_key()
    planned = repo.run("plan", "--detailed-exitcode")
    assert "~ api_key:  (sensitive) will change  # declared key changed" in planned.stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert _can_login(repo, "a@example.com", new)
    assert not _can_login(repo, "a@example.com", old)
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_key_changed_in_the_console_is_set_back(repo: Repo) -> None:
    seed(repo)
    console_key = new_key()
    with repo.service.client() as client:
        client.update_user("c@example.com", {}, api_key=ApiKey(console_key))
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 2
    assert "(sensitive) will change  # changed outside the reconciler" in planned.stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert _can_login(repo, "c@example.com", repo.keys["c@example.com"])
    assert not _can_login(repo, "c@example.com", console_key)
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_lock_then_unlock(repo: Repo) -> None:
    seed(repo)
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, locked=True)
    planned = repo.run("plan", "--detailed-exitcode")
    assert "! lock a@example.com" in planned.stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert repo.live()["a@example.com"].locked
    assert not _can_login(repo, "a@example.com", repo.keys["a@example.com"])
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, locked=False)
    assert "~ unlock a@example.com" in repo.run("plan", "--detailed-exitcode").stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert _can_login(repo, "a@example.com", repo.keys["a@example.com"])


def test_delete_one(repo: Repo) -> None:
    seed(repo)
    repo.remove("c@example.com")
    assert "- delete c@example.com" in repo.run("plan", "--detailed-exitcode").stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert "c@example.com" not in repo.live()


def test_too_many_deletes_are_refused_and_nothing_changes(repo: Repo) -> None:
    names = tuple(f"u{i}@example.com" for i in range(6))
    seed(repo, names)
    for name in names[:4]:
        repo.remove(name)
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 3
    assert "too many deletes: 4 of 7 live users (57.1%)" in planned.stdout
    assert "--allow-deletes 4" in planned.stdout
    refused = repo.run("apply", "--auto-approve")
    assert refused.code == 3
    assert len(repo.live()) == 7
    assert repo.run("apply", "--auto-approve", "--allow-deletes", "4").code == 0
    assert len(repo.live()) == 3


@pytest.mark.parametrize("how", ["delete", "lock"])
def test_reconciler_refuses_to_remove_itself(repo: Repo, how: str) -> None:
    seed(repo)
    admin = repo.service.admin_user
    if how == "delete":
        repo.remove(admin)
    else:
        repo.write(admin, role="admin", access={"http_api": True}, locked=True)
    result = repo.run("apply", "--auto-approve", "--allow-deletes", "1", "--allow-locks", "1")
    assert result.code == 3
    assert f"refusing to {how} {admin}: the reconciler authenticates as this API user" in result.stderr
    assert repo.live()[admin].locked is False


def test_last_unlocked_admin_is_kept(repo: Repo) -> None:
    repo.write(repo.service.admin_user, role="normal", access={"http_api": True})
    result = repo.run("plan", "--detailed-exitcode")
    assert result.code == 3
    assert "leaves no unlocked admin" in result.stdout


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_empty_or_missing_users_dir_is_refused(repo: Repo, state: str) -> None:
    seed(repo)
    for path in repo.users.iterdir():
        path.unlink()
    if state == "missing":
        repo.users.rmdir()
    result = repo.run("apply", "--auto-approve", "--allow-deletes", "10")
    assert result.code == 3
    assert ("declares no users" if state == "empty" else "does not exist") in result.output
    assert len(repo.live()) == 4


def test_saved_plan_is_applied_exactly_or_refused_when_stale(repo: Repo) -> None:
    seed(repo)
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    saved = json.loads((repo.root / "plan.json").read_text())
    assert [c["api_user"] for c in saved["changes"]] == ["a@example.com"]
    with repo.service.client() as client:
        client.update_user("b@example.com", {"description": "edited in the console"})
    stale = repo.run("apply", "plan.json")
    assert stale.code == 1  # an error, not a safety refusal: no override applies a stale plan
    assert "stale" in stale.stderr and "b@example.com" in stale.stderr
    assert repo.live()["a@example.com"].timezone == "Asia/Tokyo"
    repo.write("b@example.com", access={"http_api": True, "smtp": True}, timezone="Asia/Tokyo")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    repo.write("c@example.com", access={"http_api": True, "smtp": True}, timezone="Europe/Paris")
    moved = repo.run("apply", "plan.json")
    assert moved.code == 1 and "the files in users/ changed" in moved.stderr
    repo.write("c@example.com", access={"http_api": True, "smtp": True}, timezone="Asia/Tokyo")
    assert repo.run("apply", "plan.json").code == 0
    assert repo.live()["a@example.com"].timezone == "UTC"


def test_against_a_service_without_leases_a_second_apply_fails_fast_on_the_local_lock(repo: Repo) -> None:
    repo.service.faults.no_shared_state = True
    repo.write("a@example.com")
    state = repo.root / ".reconciler"
    with reconcile_lock(state, repo.service.base_url, "apply"):
        result = repo.run("apply", "--auto-approve")
    assert result.code == 1
    assert "another run holds the lock" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert "a@example.com" not in repo.live()


def write_lock(state: Path, service: str, **fields: object) -> Path:
    """A lock file as another run left it; by default its process (on this host) is gone."""
    path = lock_path(state, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "holder": "ci",
        "host": socket.gethostname(),
        "pid": 2**22 + 1,
        "started_at": "2026-11-27T00:00:00+00:00",
        "command": "apply",
        "service": service,
    } | fields
    path.write_text(json.dumps(info))
    return path


def test_stale_lock_of_a_dead_process_is_taken_over(repo: Repo) -> None:
    repo.service.faults.no_shared_state = True  # the local lock is the fallback of such services
    repo.write("a@example.com")
    path = write_lock(repo.root / ".reconciler", repo.service.base_url)
    assert repo.run("apply", "--auto-approve").code == 0
    assert not path.exists()


def test_one_change_failing_mid_run_leaves_the_others_applied_and_a_rerun_converges(repo: Repo) -> None:
    seed(repo)
    for name in APPS:
        repo.write(name, access={"http_api": True, "smtp": True}, timezone="UTC")
    repo.service.faults.fail_writes_for = {"b@example.com"}
    result = repo.run("apply", "--auto-approve")
    assert result.code == 1
    assert "2 of 3 changes applied" in result.stdout
    live = repo.live()
    assert (
        live["a@example.com"].timezone,
        live["b@example.com"].timezone,
        live["c@example.com"].timezone,
    ) == ("UTC", "Asia/Tokyo", "UTC")
    repo.service.faults.fail_writes_for = set()
    assert repo.run("apply", "--auto-approve").code == 0
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_apply_needs_approval_off_a_terminal(repo: Repo) -> None:
    repo.write("a@example.com")
    result = repo.run("apply")
    assert result.code == 1
    assert "--auto-approve" in result.stderr
    assert "a@example.com" not in repo.live()


def test_missing_secret_applies_nothing_and_names_file_and_line(repo: Repo) -> None:
    repo.write("a@example.com")
    repo.write("b@example.com")
    env = repo.env()
    del env[repo.var("b@example.com")]
    result = repo.run("apply", "--auto-approve", env=env)
    assert result.code == 1
    assert (
        "users/b@example.com.yaml:3: api_key.from_env: environment variable" in result.stderr
        and repo.var("b@example.com") in result.stderr
    )
    assert set(repo.live()) == {repo.service.admin_user}


def test_plan_without_secrets_skips_key_checks(repo: Repo) -> None:
    seed(repo)
    env = {k: v for k, v in repo.env().items() if not k.startswith("KEY_")}
    result = repo.run("plan", "--detailed-exitcode", env=env)
    assert result.code == 0
    assert "Key checks skipped for " in result.stdout


def test_audit_log_records_changes_and_outcomes_never_keys(repo: Repo) -> None:
    seed(repo)
    lines = (repo.root / ".reconciler" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    created = {e["api_user"] for e in entries if e["action"] == "create" and e["outcome"] == "ok"}
    assert created == set(APPS)
    assert all(e["service"] == repo.service.base_url and e["actor"] for e in entries)
    text = "\n".join(lines)
    assert not any(secret in text for secret in repo.secrets())


def test_markdown_and_json_plans_through_the_cli(repo: Repo) -> None:
    repo.write("a@example.com", access={"smtp": True})
    md = repo.run("plan", "--detailed-exitcode", "--format", "markdown")
    assert md.stdout.startswith("<!-- reconciler-plan -->") and "#### Create (1)" in md.stdout
    data = json.loads(repo.run("plan", "--detailed-exitcode", "--format", "json").stdout)
    assert data["summary"]["create"] == 1


def test_target_limits_apply(repo: Repo) -> None:
    repo.write("a@example.com")
    repo.write("b@example.com")
    assert repo.run("apply", "--auto-approve", "--target", "a@*").code == 0
    assert "b@example.com" not in repo.live() and "a@example.com" in repo.live()


def test_saved_plan_made_for_a_target_is_not_applied_to_everyone(repo: Repo) -> None:
    repo.write("a@example.com")
    repo.write("b@example.com")
    assert repo.run("plan", "--detailed-exitcode", "--target", "a@*", "--out", "plan.json").code == 2
    refused = repo.run("apply", "plan.json")
    assert refused.code == 1  # a stale plan is an error, not a safety refusal
    assert "does not match what apply would do now" in refused.stderr
    assert set(repo.live()) == {repo.service.admin_user}
    assert repo.run("apply", "plan.json", "--target", "a@*").code == 0
    assert set(repo.live()) == {repo.service.admin_user, "a@example.com"}


def test_a_change_the_service_silently_ignores_is_reported_and_fails_the_run(repo: Repo) -> None:
    seed(repo)
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    repo.service.faults.ignore_writes_for = {"a@example.com"}
    result = repo.run("apply", "--auto-approve")
    assert result.code == 1
    assert "1 of 1 changes applied" in result.stdout  # the service said yes...
    assert "Still pending after apply" in result.stderr  # ...but the re-plan saw nothing change
    assert "update a@example.com: timezone" in result.stderr


def test_force_unlock_takes_over_a_live_local_lock(repo: Repo) -> None:
    repo.service.faults.no_shared_state = True
    repo.write("a@example.com")
    write_lock(
        repo.root / ".reconciler",
        repo.service.base_url,
        host="other-host",
        pid=1,
        started_at="2999-01-01T00:00:00+00:00",
    )
    held = repo.run("apply", "--auto-approve")
    assert held.code == 1
    assert "ci on other-host (pid 1, apply" in held.stderr and "--force-unlock" in held.stderr
    assert repo.run("apply", "--auto-approve", "--force-unlock").code == 0
    assert "a@example.com" in repo.live()


def test_turning_smtp_off_applies_even_though_the_file_drops_its_senders(repo: Repo) -> None:
    repo.write("a@example.com", access={"smtp": True}, smtp_senders=["a@example.com", "@a.example.com"])
    assert repo.run("apply", "--auto-approve").code == 0
    repo.write("a@example.com", access={"smtp": False})
    planned = repo.run("plan", "--detailed-exitcode")
    assert '~ smtp_senders:  ["a@example.com", "@a.example.com"] -> null' in planned.stdout
    result = repo.run("apply", "--auto-approve")
    assert result.code == 0, result.output
    assert repo.live()["a@example.com"].smtp_senders is None
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_an_unreadable_key_of_an_existing_user_stops_apply_before_any_change(repo: Repo) -> None:
    seed(repo)
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    env = repo.env()
    del env[repo.var("c@example.com")]  # c's key rotation could never be noticed without it
    result = repo.run("apply", "--auto-approve", env=env)
    assert result.code == 1
    assert "users/c@example.com.yaml:3: api_key.from_env: environment variable" in result.stderr
    assert repo.live()["a@example.com"].timezone == "Asia/Tokyo"
    assert (
        repo.run("plan", "--detailed-exitcode", env=env).code == 2
    )  # plan still works, skipping c's key check
    assert repo.run("apply", "--auto-approve", "--target", "a@*", env=env).code == 0


def test_rotating_the_reconcilers_own_key_runs_last_and_the_run_finishes(repo: Repo) -> None:
    seed(repo)
    admin, old = repo.service.admin_user, repo.service.admin_key
    repo.keys[admin] = new = new_key()
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    env = repo.env() | {"RECONCILER_API_KEY": old}  # CI still holds the old key during this run
    result = repo.run("apply", "--auto-approve", env=env)
    assert result.code == 0, result.output
    assert "2 of 2 changes applied" in result.stdout
    assert _can_login(repo, admin, new)
    assert not _can_login(repo, admin, old)
    repo.service.admin_key = new  # from now on CI holds the new key
    # The fingerprint secret is independent of every key: rotating the reconciler's own key leaves
    # every recorded fingerprint valid.
    assert repo.run("plan").code == 0


def test_a_new_fingerprint_secret_is_named_in_the_plan_not_called_a_key_change(repo: Repo) -> None:
    seed(repo)
    repo.service.fingerprint_secret = "another-fingerprint-secret-0123456789abcdef"
    replanned = repo.run("plan", "--detailed-exitcode")
    assert replanned.code == 2
    assert "fingerprint secret changed" in replanned.stdout
    assert "declared key changed" not in replanned.stdout
    assert repo.run("apply", "--auto-approve").code == 0
    assert repo.run("plan", "--detailed-exitcode").code == 0


def test_plan_out_into_a_missing_directory_is_a_clear_error(repo: Repo) -> None:
    result = repo.run("plan", "--detailed-exitcode", "--out", "no/such/dir/plan.json")
    assert result.code == 1
    assert "cannot save the plan to no/such/dir/plan.json" in result.stderr


def test_racing_runs_never_both_take_the_lock(repo: Repo) -> None:
    """Many runs race to take over one stale lock: exactly one holds it at any time."""
    import threading
    import time

    state = repo.root / ".reconciler"
    holders: list[int] = []
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def contender(i: int) -> None:
        barrier.wait()
        try:
            with reconcile_lock(state, "svc", f"run{i}"):
                holders.append(i)
                time.sleep(0.005)  # hold it a while, so an overlapping holder would be seen
                assert len(holders) == 1, "two runs held the lock at once"
                holders.remove(i)
        except LockHeld:
            pass
        except AssertionError as exc:
            errors.append(str(exc))

    for _ in range(20):
        write_lock(state, "svc")  # every round starts with a stale lock to take over
        threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_plan_fails_on_a_key_that_is_present_but_unusable(repo: Repo) -> None:
    seed(repo)
    env = repo.env() | {repo.var("b@example.com"): "not a key!"}
    result = repo.run("plan", "--detailed-exitcode", env=env)
    assert result.code == 1
    assert "users/b@example.com.yaml:3: api_key.from_env: the key from env" in result.stderr
    absent = {k: v for k, v in repo.env().items() if k != repo.var("b@example.com")}
    assert (
        repo.run("plan", "--detailed-exitcode", env=absent).code == 0
    )  # simply absent: key check skipped, plan goes on


def test_a_bad_key_outside_the_target_does_not_block_a_targeted_run(repo: Repo) -> None:
    seed(repo)
    repo.write("a@example.com", access={"http_api": True, "smtp": True}, timezone="UTC")
    env = repo.env() | {repo.var("b@example.com"): "short"}
    assert (
        repo.run("plan", "--detailed-exitcode", env=env).code == 1
    )  # untargeted: b's unusable key fails the plan
    result = repo.run("apply", "--auto-approve", "--target", "a@*", env=env)
    assert result.code == 0, result.output
    assert repo.live()["a@example.com"].timezone == "UTC"


def test_an_empty_key_variable_counts_as_absent_like_an_unavailable_ci_secret(repo: Repo) -> None:
    seed(repo)
    result = repo.run("plan", "--detailed-exitcode", env=repo.env() | {repo.var("b@example.com"): ""})
    assert result.code == 0
    assert f"b@example.com: environment variable {repo.var('b@example.com')} is not set" in result.stdout
