"""Bodies and parameters that used to make the embedded service answer werkzeug's HTML 500 page
answer 400 in the contract's error shape, over real HTTP, for POST and PATCH alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import attrs, create, raw

LONG = "x" * 100_000


def _body(**extra: Any) -> dict[str, Any]:
    return {"api_user": "app@example.com", "api_key": new_key(), **attrs(), **extra}


def _with_raw_field(body: dict[str, Any], name: str, raw_json: str) -> str:
    """`body` as JSON with one more field written verbatim (json.dumps cannot write these)."""
    return json.dumps(body)[:-1] + f', "{name}": {raw_json}}}'


HOSTILE: dict[str, tuple[str, str, str | None]] = {
    "500 levels of lists": (_with_raw_field(_body(), "extra", "[" * 500 + "]" * 500), "too_deep", None),
    "100,000 levels of lists": (
        _with_raw_field(_body(), "extra", "[" * 100_000 + "]" * 100_000),
        "too_deep",
        None,
    ),
    "deep annotations": (
        _with_raw_field(_body(), "annotations", '{"a":' * 500 + "1" + "}" * 500),
        "too_deep",
        None,
    ),
    "a 4,400-digit integer": (_with_raw_field(_body(), "operation", "9" * 4400), "invalid_json", None),
    "a tzdata directory": (json.dumps(_body(timezone="Europe")), "timezone", "timezone"),
    "a path as a time zone": (json.dumps(_body(timezone="../../etc/passwd")), "timezone", "timezone"),
    "a NUL in the time zone": (json.dumps(_body(timezone="Asia/Tokyo\0")), "timezone", "timezone"),
    "an over-long time zone": (json.dumps(_body(timezone=LONG)), "timezone", "timezone"),
    "an over-long description": (json.dumps(_body(description=LONG)), "description", "description"),
    "an over-long sender": (
        json.dumps(_body(smtp_senders=[LONG + "@example.com"])),
        "sender",
        "smtp_senders.0",
    ),
}


def _assert_contract_400(response: Any, code: str, field: str | None) -> None:
    assert response.status_code == 400, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    errors = response.json()["errors"]
    assert {"code": code, "field": field} in [{"code": e["code"], "field": e["field"]} for e in errors]
    assert all(set(e) == {"code", "field", "message"} for e in errors)
    assert len(response.text) < 2000  # the message never echoes the input


@pytest.mark.parametrize(("body", "code", "field"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_create_is_a_400_in_the_contract_shape(
    service: RunningService, body: str, code: str, field: str | None
) -> None:
    response = raw(service, "POST", "/api_users", data=body, headers={"Content-Type": "application/json"})
    _assert_contract_400(response, code, field)
    assert raw(service, "GET", "/api_users/app@example.com").status_code == 404


@pytest.mark.parametrize(("body", "code", "field"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_update_is_a_400_and_changes_nothing(
    service: RunningService, body: str, code: str, field: str | None
) -> None:
    create(service, "app@example.com")
    before = raw(service, "GET", "/api_users/app@example.com").json()
    patch = json.loads(body) if code not in ("too_deep", "invalid_json") else None
    if patch is not None:  # a PATCH carries no api_key and must not rename
        patch.pop("api_key")
        patch.pop("api_user")
    data = body if patch is None else json.dumps(patch)
    response = raw(
        service,
        "PATCH",
        "/api_users/app@example.com",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    _assert_contract_400(response, code, field)
    assert raw(service, "GET", "/api_users/app@example.com").json() == before


@pytest.mark.parametrize("query", ["p=" + "9" * 5000, "p=²", "r=" + "1" * 30, "r=-1"])
def test_hostile_paging_parameters_are_400(service: RunningService, query: str) -> None:
    response = raw(service, "GET", f"/api_users?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_parameter"


@pytest.mark.parametrize("if_match", ['""', '"", "x"', "W/", ","])
def test_a_malformed_lease_token_is_a_4xx_not_a_500(service: RunningService, if_match: str) -> None:
    body = {"holder": "me", "host": "h", "pid": 1, "command": "apply", "ttl_seconds": 60}
    response = raw(service, "PUT", "/leases/reconcile", json=body, headers={"If-Match": if_match})
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["errors"][0]) == {"code", "field", "message"}
