"""The guided session against the stand-in, with the console driver doing what the operator says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.backend.cmc.steps import Kind, Task
from reconciler.workflows.guided import Answer, run_session
from reconciler.workflows.verify import Verdict
from tests.cmc.conftest import Cmc


@dataclass
class DriverOperator:
    """Does each task in the stand-in's console the way the steps say, then answers."""

    cmc: Cmc
    answers: list[str] = field(default_factory=list)  # "done" (default), "skip", "stop", "wrong"
    seen: list[tuple[int, Verdict]] = field(default_factory=list)
    shown: list[Task] = field(default_factory=list)
    remembered: dict[int, str | None] = field(default_factory=dict)  # a person writes it down once

    def show(self, task: Task, total: int) -> None:
        self.shown.append(task)

    def ask(self, task: Task, reveal_key: Callable[[], str | None]) -> Answer:
        answer = self.answers.pop(0) if self.answers else "done"
        if answer in ("skip", "stop"):
            return Answer(answer)
        if task.needs_key and task.number not in self.remembered:
            self.remembered[task.number] = reveal_key()
            assert reveal_key() is None, "a key is shown once"
        key = self.remembered.get(task.number)
        if answer == "wrong":
            key = "wrongKey123"
        perform(self.cmc, task, key)
        return Answer.DONE

    def saw(self, task: Task, verdict: Verdict) -> None:
        self.seen.append((task.number, verdict))


def perform(cmc: Cmc, task: Task, key: str | None) -> None:
    driver = cmc.standin.driver
    ch = dict(task.changes)
    attrs = {
        "role": ch.get("role"),
        "operation": ch.get("operation"),
        "http_api": ch.get("access.http_api"),
        "smtp": ch.get("access.smtp"),
        "own_data_only": ch.get("access.own_data_only"),
        "timezone": ch.get("timezone"),
    }
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if task.kind is Kind.CREATE:
        assert key is not None
        driver.add(task.api_user, key, **attrs)
    elif task.kind is Kind.EDIT:
        driver.edit(task.api_user, **attrs)
    elif task.kind is Kind.KEY:
        assert key is not None
        driver.change_key(task.api_user, key)
    elif task.kind is Kind.LOCK:
        driver.lock(task.api_user)
    elif task.kind is Kind.UNLOCK:
        driver.unlock(task.api_user)
    else:
        driver.delete(task.api_user)


def session(cmc: Cmc, operator: DriverOperator) -> tuple[int, ...]:
    run = cmc.run()
    try:
        return run_session(run, operator).done
    finally:
        run.close()


def test_create_key_change_access_change_lock_unlock_delete_through_the_guided_session(cmc: Cmc) -> None:
    cmc.declare("app@example.com")
    op = DriverOperator(cmc)
    assert session(cmc, op) == (1,)
    assert cmc.standin.account.user("app@example.com") is not None

    cmc.set_key("KEY_APP", "k2NewKey4567890abcdef")
    op = DriverOperator(cmc)
    assert session(cmc, op) == (1,)
    assert [t.kind for t in op.shown] == [Kind.KEY]

    cmc.declare("app@example.com", access={"http_api": True, "smtp": False})
    op = DriverOperator(cmc)
    session(cmc, op)
    assert [t.kind for t in op.shown] == [Kind.EDIT]
    assert all(v.ok for _, v in op.seen)

    for locked, kind in ((True, Kind.LOCK), (False, Kind.UNLOCK)):
        cmc.declare("app@example.com", access={"http_api": True, "smtp": False}, locked=locked)
        op = DriverOperator(cmc)
        session(cmc, op)
        assert [t.kind for t in op.shown] == [kind]
        assert cmc.standin.account.user("app@example.com").locked is locked  # type: ignore[union-attr]

    cmc.remove("app@example.com")
    op = DriverOperator(cmc)
    session(cmc, op)
    assert [t.kind for t in op.shown] == [Kind.DELETE]
    assert cmc.standin.account.user("app@example.com") is None
    assert session(cmc, DriverOperator(cmc)) == ()  # nothing left


def test_a_step_done_wrong_is_shown_with_what_the_probe_saw_and_asked_again(cmc: Cmc) -> None:
    cmc.declare("app@example.com")
    op = DriverOperator(cmc, answers=["wrong"])
    session(cmc, op)
    first, second = op.seen[0][1], op.seen[-1][1]
    assert not first.ok
    assert "refused on the relay" in " ".join(first.lines)
    # The operator fixed it (the driver re-added with the right key) and the next done verified.
    assert second.ok


def test_the_session_resumes_after_stop(cmc: Cmc) -> None:
    cmc.declare("a@example.com")
    cmc.declare("b@example.com")
    op = DriverOperator(cmc, answers=["done", "stop"])
    assert session(cmc, op) == (1,)
    op = DriverOperator(cmc)
    session(cmc, op)
    assert [t.api_user for t in op.shown] == ["b@example.com"]
