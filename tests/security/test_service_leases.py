"""Lease fencing (docs/contract.md, "Leases"), a regression test of issue 20: a write carrying the
X-Lease-Token of lease `other` succeeded while `reconcile`, the lease API-user writes are made
under, was held by another run. Over real loopback HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import create, raw

LEASE = {"holder": "ci-bot", "host": "runner-7", "pid": 4242, "command": "apply", "ttl_seconds": 60}
WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "/api_users/a@example.com", {"locked": True}),
    ("DELETE", "/api_users/a@example.com", None),
    ("POST", "/api_users", {"api_user": "b@example.com", "api_key": new_key(), "role": "normal"}),
]


def _token(service: RunningService, name: str) -> str:
    taken = raw(service, "PUT", f"/leases/{name}", json=LEASE)
    assert taken.status_code == 201, taken.text
    token: str = taken.json()["token"]
    return token


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_the_token_of_another_lease_is_refused_while_reconcile_is_held(
    service: RunningService, method: str, path: str, body: dict[str, Any] | None
) -> None:
    create(service, "a@example.com")
    _token(service, "reconcile")  # another run holds the lease API-user writes are made under
    other = _token(service, "other")
    refused = raw(service, method, path, json=body, headers={"X-Lease-Token": other})
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["code"] == "lease_lost"
    assert raw(service, "GET", "/api_users/a@example.com").json()["locked"] is False
    assert raw(service, "GET", "/api_users/b@example.com").status_code == 404


def test_the_token_of_another_lease_is_refused_when_reconcile_is_free(service: RunningService) -> None:
    create(service, "a@example.com")
    other = _token(service, "other")
    refused = raw(service, *WRITES[0][:2], json=WRITES[0][2], headers={"X-Lease-Token": other})
    assert refused.status_code == 409 and refused.json()["errors"][0]["code"] == "lease_lost"


def test_the_current_reconcile_token_writes(service: RunningService) -> None:
    create(service, "a@example.com")
    token = _token(service, "reconcile")
    done = raw(
        service, "PATCH", "/api_users/a@example.com", json={"locked": True}, headers={"X-Lease-Token": token}
    )
    assert done.status_code == 200
    assert done.json()["locked"] is True


def test_a_console_write_without_a_token_is_allowed_and_if_match_still_protects_it(
    service: RunningService,
) -> None:
    create(service, "a@example.com")
    _token(service, "reconcile")  # a run is going on; a person edits in the console anyway
    before = raw(service, "GET", "/api_users/a@example.com")
    done = raw(service, "PATCH", "/api_users/a@example.com", json={"timezone": "UTC"})
    assert done.status_code == 200
    stale = raw(
        service,
        "PATCH",
        "/api_users/a@example.com",
        json={"locked": True},
        headers={"If-Match": before.headers["ETag"]},
    )
    assert stale.status_code == 412
    assert stale.json()["errors"][0]["code"] == "version_mismatch"
