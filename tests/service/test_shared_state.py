"""Contract 2.1 on the embedded service: versions and If-Match, leases with a fencing token, and the
operation log. Plain HTTP over loopback, real SQLite."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler_service.clock import stamp
from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import create, raw

LEASE = {"holder": "ci-bot", "host": "runner-7", "pid": 4242, "command": "apply", "ttl_seconds": 60}
RECONCILER_HEADERS = {
    "X-Reconciler-Actor": "ci-bot",
    "X-Reconciler-Commit": "abc123",
    "X-Reconciler-Run": "77",
}


def _lease(service: RunningService, name: str = "reconcile", **overrides: Any) -> Any:
    return raw(service, "PUT", f"/leases/{name}", json={**LEASE, **overrides})


def _operations(service: RunningService, **params: Any) -> list[dict[str, Any]]:
    response = raw(service, "GET", "/operations", params=params)
    assert response.status_code == 200, response.text
    operations: list[dict[str, Any]] = response.json()["operations"]
    return operations


# --- versions ---------------------------------------------------------------------------------------


def test_every_write_changes_the_version_and_single_user_answers_carry_it_as_etag(
    service: RunningService,
) -> None:
    created = raw(
        service,
        "POST",
        "/api_users",
        json={
            "api_user": "a@example.com",
            "api_key": new_key(),
            "role": "normal",
            "access": {"http_api": True},
        },
    )
    first = created.json()["version"]
    assert created.headers["ETag"] == f'"{first}"'
    fetched = raw(service, "GET", "/api_users/a@example.com")
    assert fetched.headers["ETag"] == f'"{first}"' and fetched.json()["version"] == first
    patched = raw(service, "PATCH", "/api_users/a@example.com", json={"timezone": "UTC"})
    second = patched.json()["version"]
    assert second != first and patched.headers["ETag"] == f'"{second}"'
    listed = raw(service, "GET", "/api_users").json()["api_users"]
    assert {u["api_user"]: u["version"] for u in listed}["a@example.com"] == second


def test_if_match_refuses_a_write_to_a_user_that_changed_since(service: RunningService) -> None:
    create(service, "a@example.com")
    seen = raw(service, "GET", "/api_users/a@example.com").headers["ETag"]
    raw(service, "PATCH", "/api_users/a@example.com", json={"timezone": "UTC"})  # the console
    stale = raw(
        service, "PATCH", "/api_users/a@example.com", json={"locked": True}, headers={"If-Match": seen}
    )
    assert stale.status_code == 412
    assert stale.json()["errors"][0]["code"] == "version_mismatch"
    assert raw(service, "GET", "/api_users/a@example.com").json()["locked"] is False
    assert raw(service, "DELETE", "/api_users/a@example.com", headers={"If-Match": seen}).status_code == 412
    current = raw(service, "GET", "/api_users/a@example.com").headers["ETag"]
    ok = raw(
        service, "PATCH", "/api_users/a@example.com", json={"locked": True}, headers={"If-Match": current}
    )
    assert ok.status_code == 200 and ok.json()["locked"] is True
    current = ok.headers["ETag"]
    assert (
        raw(service, "DELETE", "/api_users/a@example.com", headers={"If-Match": current}).status_code == 204
    )


def test_a_bogus_or_malformed_if_match_is_412_never_a_blind_write(service: RunningService) -> None:
    create(service, "a@example.com")
    for value in ('"bogus"', "bogus", 'W/"x"', ""):
        answer = raw(
            service, "PATCH", "/api_users/a@example.com", json={"locked": True}, headers={"If-Match": value}
        )
        assert answer.status_code == 412, value
    assert raw(service, "GET", "/api_users/a@example.com").json()["locked"] is False


# --- leases -----------------------------------------------------------------------------------------


def test_a_lease_is_taken_once_and_a_second_taker_gets_the_holder_without_its_token(
    service: RunningService,
) -> None:
    taken = _lease(service)
    assert taken.status_code == 201
    lease = taken.json()
    assert set(lease) == {
        "name", "holder", "host", "pid", "command", "token", "acquired_at", "expires_at", "process_started"
    }  # fmt: skip
    assert lease["name"] == "reconcile" and lease["holder"] == "ci-bot"
    refused = _lease(service, holder="alice", host="laptop")
    assert refused.status_code == 409
    assert refused.json() == {k: v for k, v in lease.items() if k != "token"}
    shown = raw(service, "GET", "/leases/reconcile")
    assert shown.status_code == 200 and "token" not in shown.json()


def test_renewal_needs_the_token_and_release_frees_the_lease(service: RunningService) -> None:
    lease = _lease(service, ttl_seconds=5).json()
    token = {"If-Match": f'"{lease["token"]}"'}
    renewed = raw(service, "PUT", "/leases/reconcile", json={**LEASE, "ttl_seconds": 600}, headers=token)
    assert renewed.status_code == 200
    assert renewed.json()["token"] == lease["token"] and renewed.json()["expires_at"] > lease["expires_at"]
    wrong = raw(service, "PUT", "/leases/reconcile", json=LEASE, headers={"If-Match": '"nope"'})
    assert wrong.status_code == 409 and "token" not in wrong.json()
    assert raw(service, "DELETE", "/leases/reconcile").status_code == 428
    assert raw(service, "DELETE", "/leases/reconcile", headers={"If-Match": '"nope"'}).status_code == 412
    assert raw(service, "DELETE", "/leases/reconcile", headers=token).status_code == 204
    assert raw(service, "GET", "/leases/reconcile").status_code == 404
    gone = raw(service, "PUT", "/leases/reconcile", json=LEASE, headers=token)
    assert gone.status_code == 412 and gone.json()["errors"][0]["code"] == "lease_lost"


def test_an_expired_lease_is_free(service: RunningService) -> None:
    _lease(service, ttl_seconds=1)
    time.sleep(1.2)
    assert raw(service, "GET", "/leases/reconcile").status_code == 404
    assert _lease(service, holder="alice").status_code == 201


def test_forced_release_breaks_any_lease_and_is_logged(service: RunningService) -> None:
    _lease(service)
    assert (
        raw(service, "DELETE", "/leases/reconcile?force=true", headers=RECONCILER_HEADERS).status_code == 204
    )
    assert raw(service, "GET", "/leases/reconcile").status_code == 404
    assert raw(service, "DELETE", "/leases/reconcile?force=true").status_code == 404
    entry = _operations(service)[0]
    assert entry["action"] == "lease_force" and entry["fields"] == ["reconcile"]
    assert entry["actor_api_user"] == service.admin_user and entry["actor"] == "ci-bot"


def test_a_write_under_a_lost_lease_is_refused_lease_lost(service: RunningService) -> None:
    create(service, "a@example.com")
    token = _lease(service).json()["token"]
    fenced = {"X-Lease-Token": token}
    ok = raw(service, "PATCH", "/api_users/a@example.com", json={"timezone": "UTC"}, headers=fenced)
    assert ok.status_code == 200
    raw(service, "DELETE", "/leases/reconcile?force=true")
    for method, path, body in (
        ("PATCH", "/api_users/a@example.com", {"locked": True}),
        ("DELETE", "/api_users/a@example.com", None),
        ("POST", "/api_users", {"api_user": "b@example.com", "api_key": new_key(), "role": "normal"}),
    ):
        refused = raw(service, method, path, json=body, headers=fenced)
        assert refused.status_code == 409, method
        assert refused.json()["errors"][0]["code"] == "lease_lost"
    user = raw(service, "GET", "/api_users/a@example.com").json()
    assert user["locked"] is False
    assert raw(service, "GET", "/api_users/b@example.com").status_code == 404


def test_leases_are_for_admins(service: RunningService) -> None:
    key = create(service, "n@example.com")
    answer = raw(service, "PUT", "/leases/reconcile", json=LEASE, auth=("n@example.com", key))
    assert answer.status_code == 403


# --- operation log ----------------------------------------------------------------------------------


def test_every_write_is_logged_with_who_and_what_but_never_a_key(service: RunningService) -> None:
    key = create(service, "a@example.com")
    new = new_key()
    raw(
        service,
        "PATCH",
        "/api_users/a@example.com",
        json={"timezone": "UTC", "access": {"smtp": False}},
        headers=RECONCILER_HEADERS,
    )
    raw(service, "PATCH", "/api_users/a@example.com", json={"api_key": new}, headers=RECONCILER_HEADERS)
    raw(service, "PATCH", "/api_users/a@example.com", json={"locked": True})
    raw(service, "PATCH", "/api_users/a@example.com", json={"locked": False})
    raw(service, "DELETE", "/api_users/a@example.com")
    response = raw(service, "GET", "/operations", params={"api_user": "A@example.com"})
    assert key not in response.text and new not in response.text
    ops = response.json()["operations"]
    assert [o["action"] for o in ops] == ["delete", "unlock", "lock", "key_change", "update", "create"]
    update = ops[4]
    assert update["fields"] == ["access.smtp", "timezone"]
    assert (update["source"], update["actor"], update["commit"], update["run"]) == (
        "reconciler",
        "ci-bot",
        "abc123",
        "77",
    )
    assert ops[3]["fields"] == ["api_key"]
    console = ops[2]
    assert (console["source"], console["actor"], console["commit"]) == ("api", None, None)
    assert console["actor_api_user"] == service.admin_user
    assert [o["id"] for o in ops] == sorted((o["id"] for o in ops), reverse=True)


def test_operations_filter_by_time_and_user_and_limit(service: RunningService) -> None:
    create(service, "a@example.com")
    middle = datetime.now(UTC)
    create(service, "b@example.com")
    create(service, "c@example.com")
    names = [o["api_user"] for o in _operations(service, since=middle.isoformat())]
    assert names == ["c@example.com", "b@example.com"]
    assert [o["api_user"] for o in _operations(service, limit=1)] == ["c@example.com"]
    assert [o["api_user"] for o in _operations(service, api_user="a@example.com")] == ["a@example.com"]
    bad = raw(service, "GET", "/operations", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "since"


def test_the_log_keeps_90_days_and_prunes_older_entries_on_write(service: RunningService) -> None:
    now = datetime.now(UTC)
    with sqlite3.connect(service.db_path) as conn:
        for days in (91, 89):
            conn.execute(
                "INSERT INTO operations (at, source, action, api_user, fields) "
                "VALUES (?, 'api', 'update', ?, '[]')",
                (stamp(now - timedelta(days=days)), f"d{days}@example.com"),
            )
    create(service, "a@example.com")
    kept = {o["api_user"] for o in _operations(service, limit=1000)}
    assert kept == {service.admin_user, "a@example.com", "d89@example.com"}
