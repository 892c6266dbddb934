"""`PUT /gateways/{name}` and `GET /gateways` (DESIGN.md "Gateways"), over real loopback HTTP."""

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


def test_a_normal_user_with_http_api_access_may_report_and_anyone_may_list(service: RunningService) -> None:
    key = create(service, "gw@example.com", role="normal")
    put = raw(service, "PUT", "/gateways/mx1", auth=("gw@example.com", key), json=report())
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "mx1"
    raw(service, "PUT", "/gateways/mx2", auth=("gw@example.com", key), json=report(result="rolled_back"))
    # A second report replaces the first.
    raw(service, "PUT", "/gateways/mx1", auth=("gw@example.com", key), json=report(smtp_users=4))

    listed = raw(service, "GET", "/gateways", auth=("gw@example.com", key)).json()["gateways"]

    assert [(g["name"], g["result"], g["smtp_users"]) for g in listed] == [
        ("mx1", "ok", 4),
        ("mx2", "rolled_back", 3),
    ]
    assert all(g["reported_at"] and g["desired_digest"] == DIGEST for g in listed)


def test_a_user_without_http_api_access_may_not_report(service: RunningService) -> None:
    key = create(service, "smtp-only@example.com", access={"http_api": False, "smtp": True})
    response = raw(service, "PUT", "/gateways/mx1", auth=("smtp-only@example.com", key), json=report())
    assert response.status_code == 401
    assert raw(service, "GET", "/gateways").json() == {"gateways": []}


def test_bad_reports_are_400_in_the_contract_error_shape(service: RunningService) -> None:
    for name, body in [
        ("mx1", report(result="maybe")),
        ("mx1", report(desired_digest="not-a-digest")),
        ("mx1", {**report(), "extra": 1}),
        ("mx1", {k: v for k, v in report().items() if k != "version"}),
        ("-bad", report()),
    ]:
        response = raw(service, "PUT", f"/gateways/{name}", json=body)
        assert response.status_code == 400, (name, body)
        assert response.json()["errors"][0]["code"]
