"""`PUT /gateways/{name}` and `GET /gateways` (docs/contract.md, "Gateway reports"), over real
loopback HTTP. Who may report for which gateway: tests/security/test_service_roles.py."""

from __future__ import annotations

from typing import Any

from tests.fixtures.service import RunningService
from tests.service.conftest import create, raw

DIGEST = "a" * 64


def report(**overrides: Any) -> dict[str, Any]:
    body = {
        "commit": "0123abc",
        "desired_digest": DIGEST,
        "rendered_at": "2026-11-30T12:00:00+00:00",
        "result": "ok",
        "smtp_users": 3,
        "version": "0.1.0",
    }
    return {**body, **overrides}


def gateway_user(service: RunningService, api_user: str, gateway: str) -> tuple[str, str]:
    """A `normal` API user an admin bound to `gateway` (annotation reconciler/gateway)."""
    key = create(service, api_user, role="normal", annotations={"reconciler/gateway": gateway})
    return api_user, key


def test_bound_gateways_report_and_readers_list_every_report(service: RunningService) -> None:
    mx1, mx2 = (
        gateway_user(service, "mx1@example.com", "mx1"),
        gateway_user(service, "mx2@example.com", "mx2"),
    )
    put = raw(service, "PUT", "/gateways/mx1", auth=mx1, json=report())
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "mx1"
    raw(service, "PUT", "/gateways/mx2", auth=mx2, json=report(result="rolled_back"))
    # A second report replaces the first.
    raw(service, "PUT", "/gateways/mx1", auth=mx1, json=report(smtp_users=4))
    reader = ("reader@example.com", create(service, "reader@example.com", operation=True))

    listed = raw(service, "GET", "/gateways", auth=reader).json()["gateways"]

    assert [(g["name"], g["result"], g["smtp_users"]) for g in listed] == [
        ("mx1", "ok", 4),
        ("mx2", "rolled_back", 3),
    ]
    assert all(g["reported_at"] and g["desired_digest"] == DIGEST for g in listed)
    assert raw(service, "GET", "/gateways").json()["gateways"] == listed  # the admin
    # A gateway's own credential sees its own report only.
    assert [g["name"] for g in raw(service, "GET", "/gateways", auth=mx2).json()["gateways"]] == ["mx2"]


def test_a_user_without_http_api_access_may_not_report(service: RunningService) -> None:
    key = create(service, "smtp-only@example.com", access={"http_api": False, "smtp": True})
    response = raw(service, "PUT", "/gateways/mx1", auth=("smtp-only@example.com", key), json=report())
    assert response.status_code == 401
    assert raw(service, "GET", "/gateways").json() == {"gateways": []}


def test_bad_reports_are_400_in_the_contract_error_shape(service: RunningService) -> None:
    for name, body in [
        ("mx1", report(result="maybe")),
        ("mx1", report(desired_digest="not-a-digest")),
        ("mx1", report(commit="--output=pwned")),
        ("mx1", report(commit="\u001b[2J0123abc")),
        ("mx1", report(commit="0123ab")),  # shorter than git's shortest abbreviation
        ("mx1", report(commit="A" * 7)),
        ("mx1", report(commit="a" * 65)),
        ("mx1", report(version="0.1.0\u001b[2J")),
        ("mx1", {**report(), "extra": 1}),
        ("mx1", {k: v for k, v in report().items() if k != "version"}),
        ("-bad", report()),
    ]:
        response = raw(service, "PUT", f"/gateways/{name}", json=body)
        assert response.status_code == 400, (name, body)
        assert response.json()["errors"][0]["code"]


def test_a_report_without_a_commit_is_accepted(service: RunningService) -> None:
    """A gateway whose checkout is not a git repository reports `commit: null`."""
    assert raw(service, "PUT", "/gateways/mx1", json=report(commit=None)).status_code == 200
    assert raw(service, "PUT", "/gateways/mx1", json=report(commit="a" * 64)).status_code == 200
