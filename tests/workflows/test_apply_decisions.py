"""apply's decisions against the memory backend: what runs, what is skipped, what is refused,
and that a second plan proves convergence."""

from __future__ import annotations

import pytest

from reconciler.backend.base import Capabilities
from reconciler.errors import ExitCode, UnsafePlan
from reconciler.executor import Status
from reconciler.workflows.applying import ApplyOptions, run_apply
from reconciler.workflows.planning import PlanOptions, plan
from tests.workflows.conftest import ADMIN, Desk, Recorder

APPROVED = ApplyOptions(auto_approve=True)


def test_an_apply_converges_and_the_next_plan_is_empty(desk: Desk) -> None:
    desk.write("new@example.com", timezone="UTC")
    desk.key("new@example.com", "NewKey12345")
    assert run_apply(desk.run(), APPROVED) == ExitCode.OK
    assert desk.live()["new@example.com"].timezone == "UTC"
    assert plan(desk.run(), PlanOptions()).empty


def test_a_change_the_backend_silently_drops_is_pending_after_apply_and_fails_the_run(desk: Desk) -> None:
    desk.seed("a@example.com", "KeyA1234567")
    desk.write("a@example.com", timezone="UTC")
    desk.key("a@example.com", "KeyA1234567")
    desk.account.ignore_writes_for = {"a@example.com"}
    reporter = Recorder()
    assert run_apply(desk.run(reporter), APPROVED) == ExitCode.ERROR
    assert reporter.still_pending is not None
    assert [c.api_user for c in reporter.still_pending.changes] == ["a@example.com"]


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        # A failed create: the lock and the delete after it are skipped, access is removed last.
        (
            {"new@example.com"},
            {
                "new@example.com": Status.FAILED,
                "lockme@example.com": Status.SKIPPED,
                "gone@example.com": Status.SKIPPED,
            },
        ),
        # Nothing failed: the lock and the delete run.
        (
            set(),
            {"new@example.com": Status.OK, "lockme@example.com": Status.OK, "gone@example.com": Status.OK},
        ),
    ],
)
def test_locks_and_deletes_are_skipped_after_a_failure(
    desk: Desk, failing: set[str], expected: dict[str, Status]
) -> None:
    desk.seed("lockme@example.com", "KeyL1234567")
    desk.seed("gone@example.com", "KeyG1234567")
    desk.write("lockme@example.com", locked=True)
    desk.write("new@example.com")
    for name in ("lockme@example.com", "new@example.com"):
        desk.key(name, "Key" + name[:3].upper() + "1234567")
    desk.account.fail_writes_for = failing
    reporter = Recorder()
    code = run_apply(desk.run(reporter), ApplyOptions(auto_approve=True, allow_deletes=1, allow_locks=1))
    assert {o.change.api_user: o.status for o in reporter.seen} == expected
    skipped = [o for o in reporter.seen if o.status is Status.SKIPPED]
    assert all(o.detail == "an earlier change failed; access is removed last" for o in skipped)
    assert ("gone@example.com" in desk.live()) is bool(failing)
    assert desk.live()["lockme@example.com"].locked is not bool(failing)
    assert code == (ExitCode.ERROR if failing else ExitCode.OK)


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"role": "normal", "access": {"http_api": True}}, "refusing to set role on admin@example.com"),
        ({"role": "admin", "access": {"http_api": False}}, "refusing to set access.http_api on admin@"),
        ({"role": "admin", "access": {"http_api": True}, "locked": True}, "refusing to lock admin@"),
    ],
)
def test_the_reconciler_never_demotes_or_locks_its_own_user(
    desk: Desk, fields: dict[str, object], refused: str
) -> None:
    desk.seed("other@example.com", "KeyO1234567", role="admin", access={"http_api": True})
    desk.write("other@example.com", role="admin", access={"http_api": True})
    desk.key("other@example.com", "KeyO1234567")
    desk.write(ADMIN, **fields)
    made = plan(desk.run(), PlanOptions())
    assert any(r.startswith(refused) for r in made.refusals), made.refusals
    with pytest.raises(UnsafePlan):
        run_apply(desk.run(), APPROVED)
    assert desk.live()[ADMIN].role == "admin" and desk.live()[ADMIN].locked is False


@pytest.mark.parametrize(
    ("other", "refused"),
    [
        # The admin is demoted and the only other admin locked: no usable admin would be left.
        ({"role": "admin", "access": {"http_api": True}, "locked": True}, True),
        # The other admin stays unlocked: one usable admin is left.
        ({"role": "admin", "access": {"http_api": True}}, False),
    ],
)
def test_the_last_usable_admin_is_never_taken_away(
    desk: Desk, other: dict[str, object], refused: bool
) -> None:
    # The run authenticates as an operator, so only the last-admin guard (not self-protection) speaks.
    desk.seed("ops@example.com", "KeyP1234567", role="normal", operation=True, access={"http_api": True})
    desk.write("ops@example.com", role="normal", operation=True, access={"http_api": True})
    desk.key("ops@example.com", "KeyP1234567")
    desk.seed("other@example.com", "KeyO1234567", role="admin", access={"http_api": True})
    desk.write("other@example.com", **other)
    desk.key("other@example.com", "KeyO1234567")
    desk.write(ADMIN, role="normal", access={"http_api": True})
    made = plan(desk.run(api_user="ops@example.com"), PlanOptions(allow_locks=1))
    last = "refusing a plan that leaves no unlocked admin with HTTP-API access on the service"
    assert (last in made.refusals) is refused, made.refusals


def test_without_leases_the_local_lock_is_used_and_said_once(desk: Desk) -> None:
    desk.capabilities = Capabilities(conditional_writes=True, annotations=True)
    desk.write("new@example.com")
    desk.key("new@example.com", "NewKey12345")
    reporter = Recorder()
    assert run_apply(desk.run(reporter), APPROVED) == ExitCode.OK
    said = [w for w in reporter.warnings if "runs on other machines are not excluded" in w]
    assert len(said) == 1 and "the memory backend has no leases" in said[0]
    assert not list((desk.root / ".reconciler").glob("reconcile-*.lock"))  # released


def test_with_leases_the_run_holds_the_lease_and_every_write_carries_its_identity(desk: Desk) -> None:
    desk.write("new@example.com")
    desk.key("new@example.com", "NewKey12345")
    reporter = Recorder()
    run = desk.run(reporter)
    assert run_apply(run, APPROVED) == ExitCode.OK
    assert not reporter.warnings
    ops = [o for o in desk.account.operations if o.api_user == "new@example.com"]
    assert ops and {(o.run, o.source) for o in ops} == {(run.identity.run, "reconciler")}
    assert "reconcile" not in desk.account.leases  # released at the end
