"""The embedded service's HTTP behaviour, over real loopback HTTP with plain requests."""

from __future__ import annotations

import json
import threading
from importlib import resources

import pytest

from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import attrs, create, raw


def test_openapi_document_is_served_and_is_the_packaged_one(service: RunningService) -> None:
    response = raw(service, "GET", "/openapi.json", auth=("nobody@example.com", "x"))
    packaged = json.loads(resources.files("reconciler_service").joinpath("openapi.json").read_text())
    assert response.status_code == 200
    assert response.json() == packaged
    assert packaged["openapi"].startswith("3.1")


def test_the_service_serves_the_same_contract_the_http_backend_ships() -> None:
    """Two distributions, one contract: the service's copy of openapi.json is the tool's, byte for
    byte (docs/contract.md). Edit reconciler/backend/http/openapi.json, then copy it over."""
    served = resources.files("reconciler_service").joinpath("openapi.json").read_bytes()
    shipped = resources.files("reconciler.backend.http").joinpath("openapi.json").read_bytes()
    assert served == shipped


def test_create_returns_user_without_key(service: RunningService) -> None:
    key = new_key()
    body = {"api_user": "app@example.com", "api_key": key, **attrs(annotations={"team": "x"})}
    response = raw(service, "POST", "/api_users", json=body)
    assert response.status_code == 201
    user = response.json()
    assert user["api_user"] == "app@example.com"
    assert user["annotations"] == {"team": "x"}
    assert user["timezone"] == "Asia/Tokyo"
    assert "api_key" not in user and key not in response.text
    assert user["key_updated_at"] == user["created_at"] == user["updated_at"]


def test_duplicate_is_409_case_insensitively(service: RunningService) -> None:
    create(service, "app@example.com")
    body = {"api_user": "APP@example.com", "api_key": new_key(), **attrs()}
    response = raw(service, "POST", "/api_users", json=body)
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "duplicate"


def test_lookup_is_case_insensitive_and_unknown_is_404(service: RunningService) -> None:
    create(service, "App@example.com")
    assert raw(service, "GET", "/api_users/app@EXAMPLE.com").json()["api_user"] == "App@example.com"
    missing = raw(service, "GET", "/api_users/ghost@example.com")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "not_found"
    assert raw(service, "DELETE", "/api_users/ghost@example.com").status_code == 404
    assert raw(service, "PATCH", "/api_users/ghost@example.com", json={"locked": True}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "boss"}, "role"),
        ({"unknown": 1}, "unknown"),
        ({"operation": "yes"}, "operation"),  # strict: no coercion, as in the YAML
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"access": {"http_api": False, "own_data_only": True}}, "access"),
        ({"smtp_senders": ["a@example.com"], "access": {"smtp": False}}, None),
        ({"api_user": "not-an-email"}, "api_user"),
        ({"api_key": "short1"}, "api_key"),
        ({"api_key": "lettersonly"}, "api_key"),
        ({"description": "two\nlines"}, "description"),
    ],
)
def test_create_rejects_what_the_yaml_rejects(
    service: RunningService, body: dict[str, object], field: str
) -> None:
    payload = {"api_user": "app@example.com", "api_key": new_key(), **attrs(), **body}
    response = raw(service, "POST", "/api_users", json=payload)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert all(set(e) == {"code", "field", "message"} for e in errors)
    if field:
        assert any((e["field"] or "").startswith(field) for e in errors), errors
    assert raw(service, "GET", "/api_users/app@example.com").status_code == 404


def test_errors_never_echo_input_values(service: RunningService) -> None:
    secretish = "Sup3rSecretValue"
    payload = {"api_user": "app@example.com", "api_key": secretish + "!", "role": secretish, "x": secretish}
    response = raw(service, "POST", "/api_users", json=payload)
    assert response.status_code == 400
    assert len(response.json()["errors"]) == 3
    assert secretish not in response.text


def test_body_must_be_a_json_object(service: RunningService) -> None:
    response = raw(service, "POST", "/api_users", data=b"[1,2", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_json"


def test_patch_merges_validates_and_keeps_key_timestamp(service: RunningService) -> None:
    create(service, "app@example.com", annotations={"a": "1", "b": "2"})
    before = raw(service, "GET", "/api_users/app@example.com").json()
    patch = {"access": {"smtp": False}, "description": "hello", "annotations": {"a": None, "c": "3"}}
    after = raw(service, "PATCH", "/api_users/app@example.com", json=patch).json()
    assert after["access"] == {"http_api": True, "smtp": False, "own_data_only": False}
    assert after["description"] == "hello"
    assert after["annotations"] == {"b": "2", "c": "3"}
    assert after["key_updated_at"] == before["key_updated_at"]
    assert after["updated_at"] > before["updated_at"]


def test_patch_validates_the_merged_user(service: RunningService) -> None:
    create(service, "app@example.com", access={"http_api": True, "smtp": False})
    response = raw(service, "PATCH", "/api_users/app@example.com", json={"smtp_senders": ["x@example.com"]})
    assert response.status_code == 400
    renamed = raw(service, "PATCH", "/api_users/app@example.com", json={"api_user": "other@example.com"})
    assert renamed.status_code == 400
    assert raw(service, "GET", "/api_users/app@example.com").json()["smtp_senders"] is None


def test_key_updated_at_moves_only_when_the_key_changes(service: RunningService) -> None:
    key = create(service, "app@example.com")
    first = raw(service, "GET", "/api_users/app@example.com").json()
    same = raw(service, "PATCH", "/api_users/app@example.com", json={"api_key": key}).json()
    assert same["key_updated_at"] == first["key_updated_at"]
    assert same["updated_at"] == first["updated_at"]  # nothing changed at all
    new = new_key()
    changed = raw(service, "PATCH", "/api_users/app@example.com", json={"api_key": new}).json()
    assert changed["key_updated_at"] > first["key_updated_at"]
    # The new key works, the old one does not.
    assert raw(service, "GET", "/api_users", auth=("app@example.com", new)).status_code == 200
    assert raw(service, "GET", "/api_users", auth=("app@example.com", key)).status_code == 401


def test_delete_then_gone(service: RunningService) -> None:
    create(service, "app@example.com")
    assert raw(service, "DELETE", "/api_users/APP@example.com").status_code == 204
    assert raw(service, "GET", "/api_users/app@example.com").status_code == 404


class TestAuth:
    def test_bad_missing_and_unknown_credentials_are_401(self, service: RunningService) -> None:
        assert raw(service, "GET", "/api_users", auth=(service.admin_user, "wrongKey123")).status_code == 401
        assert raw(service, "GET", "/api_users", auth=("ghost@example.com", "wrongKey123")).status_code == 401
        import requests

        response = requests.get(service.base_url + "/api_users", timeout=5)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")

    def test_normal_user_may_read_but_change_nothing(self, service: RunningService) -> None:
        key = create(service, "reader@example.com", operation=True)
        create(service, "victim@example.com")
        me = ("reader@example.com", key)
        assert raw(service, "GET", "/api_users", auth=me).status_code == 200
        assert raw(service, "GET", "/api_users/victim@example.com", auth=me).status_code == 200
        body = {"api_user": "new@example.com", "api_key": new_key(), **attrs()}
        assert raw(service, "POST", "/api_users", auth=me, json=body).status_code == 403
        assert (
            raw(service, "PATCH", "/api_users/victim@example.com", auth=me, json={"locked": True}).status_code
            == 403
        )
        assert (
            raw(
                service, "PATCH", "/api_users/reader@example.com", auth=me, json={"role": "admin"}
            ).status_code
            == 403
        )
        assert raw(service, "DELETE", "/api_users/victim@example.com", auth=me).status_code == 403
        assert raw(service, "GET", "/relay/messages", auth=me).status_code == 403
        assert raw(service, "GET", "/api_users/victim@example.com").json()["locked"] is False
        assert raw(service, "GET", "/api_users/new@example.com").status_code == 404

    def test_locked_admin_can_do_nothing(self, service: RunningService) -> None:
        key = create(service, "boss@example.com", role="admin", locked=True)
        me = ("boss@example.com", key)
        assert raw(service, "GET", "/api_users", auth=me).status_code == 401
        assert raw(service, "DELETE", f"/api_users/{service.admin_user}", auth=me).status_code == 401
        assert raw(service, "GET", f"/api_users/{service.admin_user}").status_code == 200

    def test_admin_without_http_api_is_401(self, service: RunningService) -> None:
        key = create(service, "smtponly@example.com", role="admin", access={"http_api": False, "smtp": True})
        assert raw(service, "GET", "/api_users", auth=("smtponly@example.com", key)).status_code == 401


class TestPagination:
    def test_pages_are_ordered_case_insensitively_and_bounded(self, service: RunningService) -> None:
        for name in ("b@example.com", "A@example.com", "c@example.com", "D@example.com"):
            create(service, name)
        names = []
        for page in range(3):
            body = raw(service, "GET", "/api_users", params={"p": page, "r": 2}).json()
            assert body["total"] == 5
            names += [u["api_user"] for u in body["api_users"]]
        assert names == [
            "A@example.com",
            "admin@example.com",
            "b@example.com",
            "c@example.com",
            "D@example.com",
        ]

    @pytest.mark.parametrize("params", [{"r": 101}, {"r": 0}, {"p": -1}, {"p": "x"}])
    def test_bad_page_parameters_are_400(self, service: RunningService, params: dict[str, object]) -> None:
        assert raw(service, "GET", "/api_users", params=params).status_code == 400


def test_concurrent_creates_of_one_name_create_it_once(service: RunningService) -> None:
    statuses: list[int] = []

    def attempt(i: int) -> None:
        body = {"api_user": f"{'RACE' if i % 2 else 'race'}@example.com", "api_key": new_key(), **attrs()}
        statuses.append(raw(service, "POST", "/api_users", json=body).status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 7


def test_list_page_json_equals_the_user_objects(service: RunningService) -> None:
    # The list endpoint renders users in SQL; it must say exactly what GET of each user says.
    create(service, "a@example.com", annotations={"k": "v"}, smtp_senders=["@a.example.com"], description="d")
    create(service, "b@example.com", access={"http_api": False, "smtp": False})
    listed = raw(service, "GET", "/api_users").json()["api_users"]
    for user in listed:
        assert user == raw(service, "GET", f"/api_users/{user['api_user']}").json()
    assert len(listed) == 3


def test_list_page_json_hides_what_get_hides_from_a_reader(service: RunningService) -> None:
    """For a non-admin the SQL leaves out the admin-only annotation (roles.py): the same answer as GET."""
    notes = {"reconciler/key-fingerprint": "hmac-sha256:x", "reconciler/key-source": "age-sha256:y", "k": "v"}
    create(service, "a@example.com", annotations=notes)
    reader = ("reader@example.com", create(service, "reader@example.com", operation=True))
    listed = raw(service, "GET", "/api_users", auth=reader).json()["api_users"]
    for user in listed:
        assert user == raw(service, "GET", f"/api_users/{user['api_user']}", auth=reader).json()
    (a,) = (u for u in listed if u["api_user"] == "a@example.com")
    assert a["annotations"] == {"reconciler/key-source": "age-sha256:y", "k": "v"}


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api_users"), ("PATCH", "/api_users/admin@example.com")]
)
def test_an_oversized_body_is_413_in_the_error_shape(service: RunningService, method: str, path: str) -> None:
    body = {"api_user": "big@example.com", "api_key": new_key(), **attrs(description="x" * 300_000)}
    response = raw(service, method, path, json=body)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["code"] == "request_entity_too_large"
