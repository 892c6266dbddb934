"""Drift attribution and durations: pure functions, as tables of small cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.durations import parse_duration
from reconciler.model import Operation
from reconciler.plan import Action, Change, Drift, FieldChange, Plan, attribute_drift

T1 = datetime(2026, 11, 30, 10, 2, 41, tzinfo=UTC)
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def op(
    api_user: str,
    fields: tuple[str, ...],
    source: str = "api",
    at: datetime = T1,
    who: str | None = "alice@x.com",
) -> Operation:
    return Operation(
        id=1, at=at, actor_api_user=who, source=source, action="update", api_user=api_user, fields=fields
    )


def plan(*changes: Change) -> Plan:
    return Plan(changes=changes, desired_digest="0", live_versions={})


UPDATE = Change(Action.UPDATE, "a@x.com", (FieldChange("timezone", "UTC", "Asia/Tokyo"),))


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([op("a@x.com", ("timezone",))], (Drift("timezone", "alice@x.com", T1),)),
        # newest first: the console wrote last, after the reconciler
        (
            [op("A@X.com", ("timezone",)), op("a@x.com", ("timezone",), "reconciler", T0)],
            (Drift("timezone", "alice@x.com", T1),),
        ),
        # the reconciler wrote the field last: users/ changed, that is not drift
        ([op("a@x.com", ("timezone",), "reconciler"), op("a@x.com", ("timezone",), at=T0)], ()),
        ([op("a@x.com", ("description",))], ()),  # another field
        ([op("b@x.com", ("timezone",))], ()),  # another user
        ([], ()),
    ],
)
def test_drift_is_the_newest_write_of_the_field_when_not_the_reconcilers(
    operations: list[Operation], expected: tuple[Drift, ...]
) -> None:
    [change] = attribute_drift(plan(UPDATE), operations).changes
    assert change.drift == expected


def test_a_key_changed_in_the_console_is_attributed_but_a_declared_key_change_is_not() -> None:
    outside = Change(Action.UPDATE, "a@x.com", key_change=True, key_reason="changed outside the reconciler")
    declared = Change(Action.UPDATE, "b@x.com", key_change=True, key_reason="declared key changed")
    ops = [op("a@x.com", ("api_key",)), op("b@x.com", ("api_key",))]
    first, second = attribute_drift(plan(outside, declared), ops).changes
    assert [d.field for d in first.drift] == ["api_key"] and second.drift == ()


def test_drift_reads_like_the_issue_says() -> None:
    assert Drift("timezone", "alice@example.com", T1).describe() == (
        "timezone: changed by alice@example.com via the API at 2026-11-30T10:02Z"
    )


def test_a_write_by_the_service_itself_is_not_called_an_api_users() -> None:
    # The embedded service creates its first admin at start-up: no API user made that write.
    (change,) = attribute_drift(plan(UPDATE), [op("a@x.com", ("timezone",), who=None)]).changes
    assert [d.describe() for d in change.drift] == [
        "timezone: changed by the service itself at 2026-11-30T10:02Z"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), (" 2H ", 7200)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "soon", "5x", "-5m", "m5"])
def test_what_is_not_a_duration_is_refused_with_the_forms_that_are(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 30s, 5m"):
        parse_duration(text)
