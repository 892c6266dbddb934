"""Saved plans are applied exactly or refused as stale; what a dead run left unknown is settled by
the next plan; a key of the reconciler's own user rotated by a run that lost the answer is taken up."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ExitCode, StalePlan
from reconciler.output import render_json
from reconciler.secrets import ApiKey
from reconciler.workflows.applying import ApplyOptions, run_apply
from reconciler.workflows.planning import PlanOptions, plan
from reconciler.workflows.settle import audit_log
from tests.workflows.conftest import ADMIN, ADMIN_SPEC, Desk, Recorder


def _saved(desk: Desk, options: PlanOptions) -> Path:
    path = desk.root / "plan.json"
    path.write_text(render_json(plan(desk.run(), options)))
    return path


def _two_users(desk: Desk) -> None:
    for name in ("a@example.com", "b@example.com"):
        desk.seed(name, "Key" + name[0].upper() + "1234567")
        desk.key(name, "Key" + name[0].upper() + "1234567")
        desk.write(name, timezone="UTC")


def _move_live(desk: Desk) -> None:
    desk.account.users["a@example.com"].attributes["description"] = "console edit"
    desk.account.users["a@example.com"].version = desk.account.bump()


def _move_files(desk: Desk) -> None:
    desk.write("b@example.com", timezone="UTC", description="edited after the plan")


@pytest.mark.parametrize(
    ("move", "targets", "stale"),
    [
        (None, (), None),
        (_move_live, (), "live users changed since the plan: a@example.com"),
        (_move_files, (), "the files in users/ changed"),
        (None, ("a@*",), "does not match what apply would do now"),
    ],
)
def test_a_saved_plan_is_applied_exactly_or_refused_as_stale(
    desk: Desk, move: object, targets: tuple[str, ...], stale: str | None
) -> None:
    _two_users(desk)
    saved = _saved(desk, PlanOptions(targets=targets))
    if callable(move):
        move(desk)
    run = desk.run()
    if stale is None:
        assert run_apply(run, ApplyOptions(), plan_file=saved) == ExitCode.OK
        assert {u.timezone for u in desk.live().values() if u.api_user != ADMIN} == {"UTC"}
        return
    with pytest.raises(StalePlan, match=stale):
        run_apply(run, ApplyOptions(), plan_file=saved)
    assert {u.timezone for u in desk.live().values() if u.api_user != ADMIN} == {"Asia/Tokyo"}


@pytest.mark.parametrize(
    ("happened", "outcome"),
    [
        (True, "ok"),  # the change landed before the run died: the plan no longer wants it
        (False, "failed"),  # it never landed: the plan still wants it
    ],
)
def test_an_intent_without_outcome_is_settled_by_the_next_plan(
    desk: Desk, happened: bool, outcome: str
) -> None:
    desk.seed("a@example.com", "KeyA1234567", timezone="UTC" if happened else "Asia/Tokyo")
    desk.key("a@example.com", "KeyA1234567")
    desk.write("a@example.com", timezone="UTC")
    run = desk.run()
    audit = audit_log(run)
    audit.intent(action="update", api_user="a@example.com", fields={"timezone": "UTC"}, key_change=False)
    plan(run, PlanOptions())
    read = audit.read()
    assert not read.unsettled()
    settled = [e for e in read.entries if e.get("event") == "outcome"]
    assert [e["outcome"] for e in settled] == [outcome]
    assert settled[0]["detail"].startswith("settled by a later plan")


def test_intents_of_a_run_still_holding_the_lease_are_left_alone(desk: Desk) -> None:
    desk.write("a@example.com", timezone="UTC")
    desk.key("a@example.com", "KeyA1234567")
    run = desk.run()
    assert run.backend.leases is not None
    run.backend.leases.acquire("reconcile", {"holder": "ci", "host": "h", "pid": 1, "command": "apply"})
    audit_log(run).intent(action="create", api_user="a@example.com", fields={}, key_change=True)
    plan(run, PlanOptions())
    assert len(audit_log(run).read().unsettled()) == 1


@pytest.mark.parametrize(
    ("service_has", "taken_up"),
    [
        ("RotatedKey2027", True),  # the earlier run's change landed: the declared key works
        ("AdminKey2026x", False),  # it did not: the configured key still works, nothing to settle
    ],
)
def test_after_a_lost_answer_to_its_own_key_change_the_declared_key_is_taken_up(
    desk: Desk, service_has: str, taken_up: bool
) -> None:
    desk.account.users[ADMIN.lower()].key = ApiKey(service_has)
    desk.write(ADMIN, **ADMIN_SPEC, api_key={"from_env": "ADMIN_NEXT_KEY"})
    desk.monkeypatch.setenv("ADMIN_NEXT_KEY", "RotatedKey2027")
    reporter = Recorder()
    run = desk.run(reporter)
    assert run_apply(run, ApplyOptions(auto_approve=True)) == ExitCode.OK
    said = [w for w in reporter.warnings if "an earlier run rotated it" in w]
    assert len(said) == (1 if taken_up else 0)
    assert desk.account.key_of(ADMIN) == ApiKey("RotatedKey2027")  # converged either way
