"""Roles in the embedded service (docs/contract.md, "Roles"), each a regression test of issue 20:
on the service as it was, every API user with HTTP-API access read every user with its key
fingerprint, the whole operation log, the leases and every gateway report, and could report for any
gateway. Over real loopback HTTP, as the people holding these credentials would."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import create, raw

FINGERPRINT = "reconciler/key-fingerprint"
KEY_SOURCE = "reconciler/key-source"
NOTES = {
    FINGERPRINT: "hmac-sha256:" + "f" * 64 + ";sid=abc",
    KEY_SOURCE: "age-sha256:" + "e" * 64,
    "reconciler/key-updated-at": "2026-12-01T00:00:00+00:00",
}
# Non-admin credentials, one of each kind: an app's key, the PR plan's read-only key,
# an app that may only see its own data, and a gateway's key.
NON_ADMINS: dict[str, dict[str, Any]] = {
    "app@example.com": {"operation": False},
    "reader@example.com": {"operation": True},
    "own@example.com": {"operation": True, "access": {"http_api": True, "own_data_only": True}},
    "gw@example.com": {"annotations": {"reconciler/gateway": "mx1"}},
}
DIGEST = "a" * 64


def report(**overrides: Any) -> dict[str, Any]:
    body = {
        "commit": "0123abc",
        "desired_digest": DIGEST,
        "rendered_at": "2026-12-01T12:00:00+00:00",
        "result": "ok",
        "smtp_users": 3,
        "version": "0.1.0",
    }
    return body | overrides


@pytest.fixture
def people(service: RunningService) -> dict[str, tuple[str, str]]:
    """Every non-admin above plus a billing user with a fingerprint; their credentials by name."""
    create(service, "billing@example.com", annotations=NOTES)
    creds = {}
    for name, attributes in NON_ADMINS.items():
        notes = NOTES | attributes.get("annotations", {})
        creds[name] = (name, create(service, name, **(attributes | {"annotations": notes})))
    return creds


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [u["api_user"] for u in response.json()["api_users"]]


def test_a_normal_user_without_operation_authorization_gets_only_itself(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    me = people["app@example.com"]
    listed = raw(service, "GET", "/api_users", auth=me)
    assert _names(listed) == ["app@example.com"]
    assert listed.json()["total"] == 1
    assert _names(raw(service, "GET", "/api_users?p=1&r=1", auth=me)) == []
    # Another user is "not found", not "forbidden": the answer must not confirm the name exists.
    assert raw(service, "GET", "/api_users/billing@example.com", auth=me).status_code == 404
    assert raw(service, "GET", "/api_users/APP@example.com", auth=me).status_code == 200


def test_own_data_only_limits_even_a_user_with_operation_authorization(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    me = people["own@example.com"]
    assert _names(raw(service, "GET", "/api_users", auth=me)) == ["own@example.com"]
    assert raw(service, "GET", "/api_users/billing@example.com", auth=me).status_code == 404
    assert raw(service, "GET", "/operations", auth=me).json() == {"operations": []}
    assert raw(service, "GET", "/leases/reconcile", auth=me).status_code == 403


def test_operation_authorization_reads_users_log_leases_and_reports(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    reader = people["reader@example.com"]
    assert set(_names(raw(service, "GET", "/api_users", auth=reader))) == {
        service.admin_user,
        "billing@example.com",
        *NON_ADMINS,
    }
    log = raw(service, "GET", "/operations", auth=reader).json()["operations"]
    assert {op["api_user"] for op in log} >= {"billing@example.com"}
    assert raw(service, "GET", "/leases/reconcile", auth=reader).status_code == 404  # readable: none held
    raw(service, "PUT", "/gateways/mx1", auth=people["gw@example.com"], json=report())
    assert [g["name"] for g in raw(service, "GET", "/gateways", auth=reader).json()["gateways"]] == ["mx1"]


def test_without_operation_authorization_the_log_leases_and_reports_are_not_readable(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    me = people["app@example.com"]
    raw(service, "PUT", "/gateways/mx1", json=report())  # the admin's
    assert raw(service, "GET", "/operations", auth=me).json() == {"operations": []}
    assert raw(service, "GET", "/operations?api_user=billing@example.com", auth=me).json() == {
        "operations": []
    }
    assert raw(service, "GET", "/leases/reconcile", auth=me).status_code == 403
    assert raw(service, "GET", "/gateways", auth=me).json() == {"gateways": []}


@pytest.mark.parametrize("who", sorted(NON_ADMINS))
def test_no_non_admin_ever_sees_a_key_fingerprint(
    service: RunningService, people: dict[str, tuple[str, str]], who: str
) -> None:
    me = people[who]
    answers = [
        raw(service, "GET", "/api_users", auth=me),
        raw(service, "GET", "/api_users?r=1", auth=me),
        raw(service, "GET", f"/api_users/{who}", auth=me),
        raw(service, "GET", "/api_users/billing@example.com", auth=me),
    ]
    for answer in answers:
        assert FINGERPRINT not in answer.text and NOTES[FINGERPRINT] not in answer.text
    own = raw(service, "GET", f"/api_users/{who}", auth=me).json()["annotations"]
    assert own[KEY_SOURCE] == NOTES[KEY_SOURCE]  # the age digest stays visible: its ciphertext is in git


def test_admins_still_see_the_fingerprint(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    users = raw(service, "GET", "/api_users").json()["api_users"]
    assert {u["api_user"]: u["annotations"].get(FINGERPRINT) for u in users}["billing@example.com"] == (
        NOTES[FINGERPRINT]
    )
    one = raw(service, "GET", "/api_users/billing@example.com").json()
    assert one["annotations"] == NOTES


@pytest.mark.parametrize(
    "who", ["app@example.com", "reader@example.com", "own@example.com", "gw@example.com"]
)
def test_a_forged_gateway_report_from_a_user_not_bound_to_that_gateway_is_refused(
    service: RunningService, people: dict[str, tuple[str, str]], who: str
) -> None:
    raw(service, "PUT", "/gateways/mx2", json=report(result="failed"))  # the admin's: mx2 lags
    forged = raw(service, "PUT", "/gateways/mx2", auth=people[who], json=report(result="ok"))
    assert forged.status_code == 403
    assert forged.json()["errors"][0]["code"] == "forbidden"
    (mx2,) = raw(service, "GET", "/gateways").json()["gateways"]
    assert mx2["result"] == "failed"


def test_the_bound_gateway_and_admins_may_report(
    service: RunningService, people: dict[str, tuple[str, str]]
) -> None:
    assert (
        raw(service, "PUT", "/gateways/mx1", auth=people["gw@example.com"], json=report()).status_code == 200
    )
    assert raw(service, "PUT", "/gateways/mx2", json=report()).status_code == 200


def test_only_an_admin_binds_a_gateway(service: RunningService, people: dict[str, tuple[str, str]]) -> None:
    me = people["reader@example.com"]
    bind = {"annotations": {"reconciler/gateway": "mx2"}}
    assert raw(service, "PATCH", "/api_users/reader@example.com", auth=me, json=bind).status_code == 403
    assert raw(service, "PUT", "/gateways/mx2", auth=me, json=report()).status_code == 403
    assert raw(service, "PATCH", "/api_users/reader@example.com", json=bind).status_code == 200
    assert raw(service, "PUT", "/gateways/mx2", auth=me, json=report()).status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"commit": "--output=pwned"},
        {"commit": "\u001b[2J0123abc"},
        {"commit": "0123abc\n"},
        {"result": "OK"},
        {"desired_digest": "A" * 64},
        {"version": "0.1.0 ##[error]x"},
    ],
)
def test_report_fields_are_validated_by_the_service(service: RunningService, bad: dict[str, str]) -> None:
    answer = raw(service, "PUT", "/gateways/mx1", json=report(**bad))
    assert answer.status_code == 400
    assert raw(service, "GET", "/gateways").json() == {"gateways": []}


def test_a_new_user_with_a_fingerprint_created_by_an_admin_is_hidden_from_its_own_key(
    service: RunningService,
) -> None:
    """A user reading itself must not get its own fingerprint either: with the fingerprint secret
    derived from the admin's key, it was a test of guesses at the admin's key."""
    key = new_key()
    create(service, "self@example.com", key, annotations={FINGERPRINT: NOTES[FINGERPRINT]})
    mine = raw(service, "GET", "/api_users/self@example.com", auth=("self@example.com", key))
    assert mine.status_code == 200 and FINGERPRINT not in mine.json()["annotations"]
