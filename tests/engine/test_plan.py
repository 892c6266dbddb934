"""The pure diff and the safety guards, as tables of small cases (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.model import LiveUser, UserSpec
from reconciler.plan import (
    FINGERPRINT_ANNOTATION,
    KEY_UPDATED_ANNOTATION,
    Action,
    Guards,
    Plan,
    make_plan,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FP = "hmac-sha256:aaaa"


def spec(name: str, **fields: Any) -> UserSpec:
    data: dict[str, Any] = {"api_user": name, "api_key": {"from_env": "K"}, "role": "normal"}
    data.update(fields)
    return UserSpec.model_validate(data)


def live(name: str, fp: str | None = FP, key_at: datetime = T0, **fields: Any) -> LiveUser:
    annotations = {} if fp is None else {FINGERPRINT_ANNOTATION: fp, KEY_UPDATED_ANNOTATION: T0.isoformat()}
    data: dict[str, Any] = {
        "api_user": name,
        "role": "normal",
        "key_updated_at": key_at,
        "annotations": annotations,
    }
    data.update(fields)
    return LiveUser.model_validate(data)


ADMIN = spec("admin@example.com", role="admin", access={"http_api": True})
LIVE_ADMIN = live("admin@example.com", role="admin", access={"http_api": True})


def plan_of(desired: list[UserSpec], current: list[LiveUser], **kw: Any) -> Plan:
    fps = kw.pop("fingerprints", {u.api_user.lower(): FP for u in desired})
    return make_plan([ADMIN, *desired], [LIVE_ADMIN, *current], desired_digest="d", fingerprints=fps, **kw)


def test_identical_state_is_an_empty_plan() -> None:
    result = plan_of([spec("a@example.com")], [live("a@example.com")])
    assert result.changes == ()
    assert result.empty


def test_missing_user_is_created_with_its_key() -> None:
    result = plan_of([spec("new@example.com", access={"smtp": True})], [])
    (change,) = result.changes
    assert change.action is Action.CREATE and change.key_change
    assert change.new_values()["access"] == {"http_api": False, "smtp": True, "own_data_only": False}


def test_only_declared_fields_are_compared() -> None:
    # The file does not declare timezone: a different live timezone is not drift.
    result = plan_of([spec("a@example.com")], [live("a@example.com", timezone="UTC")])
    assert result.changes == ()


def test_update_lists_each_field_old_to_new() -> None:
    result = plan_of(
        [spec("a@example.com", timezone="UTC", access={"http_api": True})],
        [live("a@example.com", timezone="Asia/Tokyo")],
    )
    (change,) = result.changes
    assert change.action is Action.UPDATE
    assert [(f.field, f.old, f.new) for f in change.fields] == [
        ("access.http_api", False, True),
        ("timezone", "Asia/Tokyo", "UTC"),
    ]
    assert change.new_values() == {"access": {"http_api": True}, "timezone": "UTC"}


@pytest.mark.parametrize(
    ("live_user", "fps", "reason"),
    [
        (live("a@example.com", fp="hmac-sha256:old"), None, "declared key changed"),
        (
            live("a@example.com", key_at=datetime(2026, 11, 2, tzinfo=UTC), fp=FP),
            None,
            "changed outside the reconciler",
        ),
        (live("a@example.com", fp=None), None, "not set by the reconciler yet"),
    ],
)
def test_key_changes_are_detected_without_reading_keys(live_user: LiveUser, fps: Any, reason: str) -> None:
    result = plan_of([spec("a@example.com")], [live_user])
    (change,) = result.changes
    assert (change.action, change.key_change, change.key_reason) == (Action.UPDATE, True, reason)


def test_without_secrets_key_checks_are_skipped_but_console_changes_still_show() -> None:
    moved = live("b@example.com", key_at=datetime(2026, 11, 2, tzinfo=UTC))
    result = plan_of(
        [spec("a@example.com"), spec("b@example.com")],
        [live("a@example.com", fp="x"), moved],
        fingerprints=None,
    )
    assert result.key_checks_skipped
    assert [(c.api_user, c.key_reason) for c in result.changes] == [
        ("b@example.com", "changed outside the reconciler")
    ]
    skipped = [(k.api_user, k.reason) for k in result.skipped_keys]
    assert skipped == [("a@example.com", "key not available"), ("admin@example.com", "key not available")]
    assert result.keys_checked == 1  # b's key was found changed in the console without the key


def test_changes_come_in_a_fixed_order_access_removed_last() -> None:
    result = plan_of(
        [spec("c@example.com", locked=True), spec("b@example.com"), spec("d@example.com", locked=False)],
        [live("c@example.com"), live("d@example.com", locked=True), live("z@example.com")],
        guards=Guards(allow_deletes=1, allow_locks=1),
    )
    assert [(c.action, c.api_user) for c in result.changes] == [
        (Action.CREATE, "b@example.com"),
        (Action.UNLOCK, "d@example.com"),
        (Action.LOCK, "c@example.com"),
        (Action.DELETE, "z@example.com"),
    ]


def test_user_names_match_case_insensitively() -> None:
    assert plan_of([spec("App@Example.com")], [live("app@example.com")]).changes == ()


@pytest.mark.parametrize(
    ("live_count", "deletes", "refused"),
    [(3, 1, False), (4, 1, False), (20, 3, False), (20, 4, True), (8, 3, True)],
)
def test_delete_guards_scale_from_three_users_to_thousands(
    live_count: int, deletes: int, refused: bool
) -> None:
    keep = [spec(f"u{i}@example.com") for i in range(live_count - 1 - deletes)]
    current = [live(f"u{i}@example.com") for i in range(live_count - 1)]
    result = plan_of(keep, current)
    assert result.count(Action.DELETE) == deletes
    assert bool(result.refusals) is refused


def test_refusal_gives_numbers_and_the_narrow_override() -> None:
    current = [live(f"u{i}@example.com") for i in range(9)]
    result = plan_of([], current)
    assert "too many deletes: 9 of 10 live users (90.0%)" in result.refusals[0]
    assert "--allow-deletes 9" in result.refusals[0]
    assert plan_of([], current, guards=Guards(allow_deletes=9)).refusals == ()


def test_empty_desired_state_never_means_delete_everyone() -> None:
    result = make_plan([], [LIVE_ADMIN], desired_digest="d", fingerprints={}, guards=Guards(allow_deletes=10))
    assert any("declares no users" in r for r in result.refusals)


def test_reconciler_never_deletes_or_locks_itself() -> None:
    me = "admin@example.com"
    other = spec("boss@example.com", role="admin", access={"http_api": True})
    locked_me = spec(me, role="admin", access={"http_api": True}, locked=True)
    result = make_plan(
        [locked_me, other],
        [LIVE_ADMIN, live("boss@example.com", role="admin", access={"http_api": True})],
        desired_digest="d",
        fingerprints={},
        guards=Guards(self_user=me),
    )
    assert any("refusing to lock admin@example.com" in r for r in result.refusals)
    deleted = make_plan(
        [other],
        [LIVE_ADMIN, live("boss@example.com", role="admin", access={"http_api": True})],
        desired_digest="d",
        fingerprints={},
        guards=Guards(self_user=me),
    )
    assert any("refusing to delete admin@example.com" in r for r in deleted.refusals)


def test_last_unlocked_admin_cannot_be_removed() -> None:
    demoted = spec("admin@example.com", role="normal", access={"http_api": True})
    result = make_plan(
        [demoted, spec("a@example.com")],
        [LIVE_ADMIN, live("a@example.com")],
        desired_digest="d",
        fingerprints={},
    )
    assert result.refusals == (
        "refusing a plan that leaves no unlocked admin with HTTP-API access on the service",
    )


def test_a_backend_without_roles_has_no_admin_to_keep() -> None:
    # Mailgun: no live user is an admin, and none can be; the guard would refuse every plan.
    without_role = UserSpec.model_validate({"api_user": "a@example.com", "api_key": {"from_env": "K"}})
    result = make_plan(
        [without_role, spec("b@example.com").model_copy(update={"role": None})],
        [live("a@example.com", role="")],
        desired_digest="d",
        fingerprints={},
        guards=Guards(roles=False),
    )
    assert result.refusals == ()
    assert [c.action for c in result.changes] == [Action.CREATE]


def test_target_limits_the_plan() -> None:
    result = plan_of(
        [spec("a@example.com", timezone="UTC"), spec("b@example.com", timezone="UTC")],
        [live("a@example.com"), live("b@example.com")],
        targets=("a@*",),
    )
    assert [c.api_user for c in result.changes] == ["a@example.com"]


def test_a_changed_fingerprint_secret_is_not_called_a_changed_key() -> None:
    old = live("a@example.com", fp="hmac-sha256:aaaa;sid=old")
    result = plan_of(
        [spec("a@example.com")], [old], fingerprints={"a@example.com": "hmac-sha256:bbbb;sid=new"}
    )
    (change,) = result.changes
    assert change.key_reason is not None and change.key_reason.startswith("fingerprint secret changed")
    same_secret = live("a@example.com", fp="hmac-sha256:aaaa;sid=new")
    result = plan_of(
        [spec("a@example.com")], [same_secret], fingerprints={"a@example.com": "hmac-sha256:bbbb;sid=new"}
    )
    assert result.changes[0].key_reason == "declared key changed"


def test_turning_smtp_off_also_clears_the_senders_the_service_would_refuse() -> None:
    current = live(
        "a@example.com",
        access={"smtp": True, "http_api": True, "own_data_only": True},
        smtp_senders=["a@example.com", "@a.example.com"],
    )
    result = plan_of([spec("a@example.com", access={"smtp": False, "http_api": False})], [current])
    (change,) = result.changes
    assert [(f.field, f.old, f.new) for f in change.fields] == [
        ("access.http_api", True, False),
        ("access.smtp", True, False),
        ("access.own_data_only", True, False),
        ("smtp_senders", ["a@example.com", "@a.example.com"], None),
    ]


def test_admin_guard_judges_fields_a_file_leaves_out_by_their_live_value() -> None:
    # The admin's file omits `access`; only the description changes: the admin stays usable.
    admin = spec("admin@example.com", role="admin", description="ops")
    result = make_plan([admin], [LIVE_ADMIN], desired_digest="d", fingerprints={})
    assert result.refusals == ()


def test_empty_users_dir_is_one_refusal_without_a_useless_override() -> None:
    result = make_plan([], [LIVE_ADMIN, live("a@example.com")], desired_digest="d", fingerprints=None)
    assert len(result.refusals) == 1
    assert "--allow-deletes" not in result.refusals[0]
    assert not result.notes


def test_a_fingerprint_recorded_without_a_secret_id_still_matches() -> None:
    legacy = live("a@example.com", fp="hmac-sha256:aaaa")
    fps = {"a@example.com": "hmac-sha256:aaaa;sid=abc"}
    assert plan_of([spec("a@example.com")], [legacy], fingerprints=fps).changes == ()
    other = {"a@example.com": "hmac-sha256:bbbb;sid=abc"}
    assert plan_of([spec("a@example.com")], [legacy], fingerprints=other).changes[0].key_reason is not None
