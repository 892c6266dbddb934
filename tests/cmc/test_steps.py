"""The console steps as a pure function of users/ and the state store (tables of small cases)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.backend.cmc.steps import (
    STATE_KEY,
    Kind,
    Recorded,
    after_console,
    interim,
    record,
    tasks,
)
from reconciler.model import UserSpec


def user(name: str = "app@example.com", **attrs: Any) -> UserSpec:
    return UserSpec.model_validate(
        {"api_user": name, "api_key": {"from_env": "K"}, "role": "normal", **attrs}
    )


def verified(spec: UserSpec, fp: str | None = "fp1") -> dict[str, str]:
    return record(spec, fp, "2026-01-01 00:00:00")


@pytest.mark.parametrize(
    ("declared", "state", "fp", "kinds"),
    [
        ([user()], {}, "fp1", [Kind.CREATE]),
        ([user(locked=True)], {}, "fp1", [Kind.CREATE, Kind.LOCK]),
        ([user()], {"app@example.com": verified(user())}, "fp1", []),
        ([user()], {"app@example.com": verified(user())}, "fp2", [Kind.KEY]),
        ([user()], {"app@example.com": verified(user())}, None, []),  # key not here: no key step
        ([user(role="admin")], {"app@example.com": verified(user())}, "fp1", [Kind.EDIT]),
        ([user(locked=True)], {"app@example.com": verified(user())}, "fp1", [Kind.LOCK]),
        ([user()], {"app@example.com": verified(user(locked=True))}, "fp1", [Kind.UNLOCK]),
        ([], {"app@example.com": verified(user())}, None, [Kind.DELETE]),
        (
            [user(role="admin", locked=True)],
            {"app@example.com": verified(user())},
            "fp2",
            [Kind.KEY, Kind.EDIT, Kind.LOCK],
        ),
    ],
)
def test_changes_become_console_tasks_in_order(
    declared: list[UserSpec], state: dict[str, dict[str, str]], fp: str | None, kinds: list[Kind]
) -> None:
    found = tasks(declared, {u.api_user: fp for u in declared}, state)
    assert [t.kind for t in found] == kinds
    assert [t.number for t in found] == list(range(1, len(kinds) + 1))


def test_steps_use_the_consoles_names() -> None:
    (create,) = tasks(
        [user(role="admin", access={"http_api": True, "smtp": False})], {"app@example.com": "x"}, {}
    )
    text = "\n".join(map(str, create.steps))
    for words in (
        "API User: app@example.com",
        "API Key and API Key (confirmation)",
        "Authorization: API group Admin",
        "Access Authorization: HTTP-API: checked",
        "Access Authorization: SMTP: unchecked",
        "Time Zone",
    ):
        assert words in text
    assert "K" in (create.key_source or "")


@pytest.mark.parametrize(
    ("operation", "kinds"),
    [
        ("lock", [Kind.UNLOCK]),
        ("change_api_key", [Kind.KEY]),
        ("edit", [Kind.EDIT]),
        ("delete", [Kind.CREATE]),
    ],
)
def test_a_console_operation_puts_what_it_touched_back_into_the_plan(
    operation: str, kinds: list[Kind]
) -> None:
    state = {"app@example.com": after_console(verified(user()), operation)}
    assert [t.kind for t in tasks([user()], {"app@example.com": "fp1"}, state)] == kinds


def test_interim_expects_the_fields_of_later_tasks_as_last_verified() -> None:
    spec = user(role="admin", locked=True)
    recorded = Recorded.from_state(verified(user()))
    remaining = tasks([spec], {"app@example.com": "fp1"}, {"app@example.com": verified(user())})
    middle = interim(spec, recorded, remaining)
    assert (middle.role, middle.locked) == ("normal", False)
    assert interim(spec, recorded, []) == spec


def test_the_state_entry_keeps_a_fingerprint_never_a_key() -> None:
    entry = verified(user(), "hmac-sha256:abc")
    assert entry[STATE_KEY] == "hmac-sha256:abc"
