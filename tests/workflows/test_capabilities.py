"""The plan reads the backend's capabilities: what it cannot store is refused with file:line (or
noted), fixed values are allowed only as they are, unobservable fields are never drift, a key
change of a replacing backend says so, and a backend that cannot list is asked name by name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.backend.base import ALL_FIELDS, KeyUpdate
from reconciler.backend.memory import FULL
from reconciler.errors import ExitCode
from reconciler.plan import Action
from reconciler.workflows.applying import ApplyOptions, run_apply
from reconciler.workflows.planning import PlanOptions, plan
from tests.workflows.conftest import ADMIN, Desk

NO_DESCRIPTION = replace(FULL, fields=ALL_FIELDS - {"description"})


def _declare(desk: Desk, **fields: object) -> None:
    desk.write("a@example.com", **fields)
    desk.key("a@example.com", "KeyA1234567")


@pytest.mark.parametrize(
    ("setting", "refused", "noted"),
    [("refuse", True, False), ("note", False, True)],
)
def test_a_declared_field_the_backend_cannot_store(
    desk: Desk, setting: str, refused: bool, noted: bool
) -> None:
    desk.capabilities = NO_DESCRIPTION
    _declare(desk, description="billing")
    made = plan(desk.run(unsupported_fields=setting), PlanOptions())
    where = f"{desk.users / 'a@example.com.yaml'}:5: description"  # after api_user, api_key (2 lines), role
    assert (
        any(r.startswith(where) and "the memory backend cannot store" in r for r in made.refusals) is refused
    )
    assert any(n.startswith(f"{where} is not stored by the memory backend") for n in made.notes) is noted
    create = next(c for c in made.changes if c.action is Action.CREATE)
    assert "description" not in {f.field for f in create.fields}


@pytest.mark.parametrize(("smtp", "refused"), [(True, False), (False, True)])
def test_a_fixed_field_is_allowed_only_with_its_value(desk: Desk, smtp: bool, refused: bool) -> None:
    desk.capabilities = replace(FULL, fields=ALL_FIELDS - {"access.smtp"}, fixed={"access.smtp": True})
    _declare(desk, access={"smtp": smtp})
    made = plan(desk.run(), PlanOptions())
    assert (
        any("access.smtp: the memory backend only supports access.smtp: true" in r for r in made.refusals)
        is refused
    )
    create = next(c for c in made.changes if c.action is Action.CREATE)
    assert "access.smtp" not in {f.field for f in create.fields}  # never sent


def test_a_stored_field_that_cannot_be_read_back_is_not_drift(desk: Desk) -> None:
    desk.capabilities = replace(FULL, observable=ALL_FIELDS - {"description"})
    desk.seed("a@example.com", "KeyA1234567", description="old")
    _declare(desk, description="new")
    made = plan(desk.run(), PlanOptions())
    assert not made.changes
    assert "Not observable on the memory backend, so never reported as drift: description" in made.notes


@pytest.mark.parametrize(("mode", "replaces"), [(KeyUpdate.REPLACE, True), (KeyUpdate.IN_PLACE, False)])
def test_a_key_change_shows_as_replace_where_keys_cannot_change_in_place(
    desk: Desk, mode: KeyUpdate, replaces: bool
) -> None:
    desk.capabilities = replace(FULL, key_update=mode)
    desk.seed("a@example.com", "KeyA1234567")
    _declare(desk)
    desk.key("a@example.com", "KeyB7654321")
    made = plan(desk.run(), PlanOptions())
    change = next(c for c in made.changes if c.api_user == "a@example.com")
    assert change.key_change
    assert ("replace:" in (change.key_reason or "")) is replaces


def test_without_listing_the_live_users_are_asked_for_by_name(desk: Desk) -> None:
    desk.capabilities = replace(FULL, can_list=False)
    desk.seed("undeclared@example.com", "KeyU1234567")
    desk.seed("a@example.com", "KeyA1234567")
    _declare(desk)
    run = desk.run()
    assert not plan(run, PlanOptions()).changes  # the undeclared user is not seen, so not deleted
    run = desk.run()
    run.live_names = lambda _run: ["admin@example.com", "a@example.com", "undeclared@example.com"]
    made = plan(run, PlanOptions(allow_deletes=1))
    assert [(c.action, c.api_user) for c in made.changes] == [(Action.DELETE, "undeclared@example.com")]


def test_without_annotations_fingerprints_live_in_the_state_store_and_a_second_plan_is_empty(
    desk: Desk,
) -> None:
    desk.capabilities = replace(FULL, annotations=False)
    _declare(desk, timezone="UTC")
    run = desk.run()
    first = plan(run, PlanOptions())
    run.close()
    # No state yet: the admin's key (set outside the reconciler) is not called changed.
    assert [c.api_user for c in first.changes] == ["a@example.com"]
    assert run_apply(desk.run(), ApplyOptions(auto_approve=True)) == ExitCode.OK
    again = desk.run()
    assert again.store is None  # opened with the backend
    made = plan(again, PlanOptions())
    assert again.store is not None and again.store.read().revision is not None  # flushed by apply
    # a@ is compared against the fingerprint apply recorded; the admin's key was never set by the
    # reconciler, which the store now can say.
    assert [(c.api_user, c.key_reason) for c in made.changes] == [(ADMIN, "not set by the reconciler yet")]
    desk.key("a@example.com", "KeyB7654321")
    rekeyed = plan(desk.run(), PlanOptions())
    assert ("a@example.com", True) in [(c.api_user, c.key_change) for c in rekeyed.changes]
