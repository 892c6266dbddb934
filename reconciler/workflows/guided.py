"""`apply`/`reconcile` with a console backend: a guided session (docs/cmc.md).

One change at a time: the operator makes it in the console and answers done, skip or stop. Each
`done` is verified by probes before the next change; a change done wrong is shown with what the
probes saw and asked again. A key the operator must type is shown once, on request, through the
`Operator` (the terminal only). Every answer and every verification goes to the audit log, and
each verified change to the state store, so a stopped session resumes where it stopped: the next
checklist holds only what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from reconciler.backend.cmc.checklist import Checklist
from reconciler.backend.cmc.steps import STATE_STEP, Kind, Recorded, Task, interim
from reconciler.model import UserSpec
from reconciler.workflows.console_state import update
from reconciler.workflows.verify import (
    ConsoleRun,
    Verdict,
    checklist,
    now_stamp,
    record_verdict,
    verify_user,
)


class Answer(StrEnum):
    DONE = "done"
    SKIP = "skip"
    STOP = "stop"


class Operator(Protocol):
    """The person at the terminal (the CLI's prompt), or a test's driver."""

    def show(self, task: Task, total: int) -> None: ...

    def ask(self, task: Task, reveal_key: Callable[[], str | None]) -> Answer:
        """`reveal_key()` returns the key to type the first time it is called, then None."""
        ...

    def saw(self, task: Task, verdict: Verdict) -> None: ...


@dataclass(frozen=True)
class Session:
    done: tuple[int, ...]
    skipped: tuple[int, ...]
    stopped_at: int | None
    total: int
    probes: int
    failed_authentications: int

    @property
    def complete(self) -> bool:
        return self.stopped_at is None and not self.skipped


def run_session(run: ConsoleRun, operator: Operator, targets: tuple[str, ...] = ()) -> Session:
    plan = checklist(run, targets)
    snapshot = run.store.read().users
    done: list[int] = []
    skipped: list[int] = []
    for index, task in enumerate(plan.tasks):
        operator.show(task, len(plan.tasks))
        expect = _expected(run, task, snapshot.get(task.api_user.lower()), plan.tasks[index + 1 :])
        answer = _work(run, operator, task, expect)
        if answer is Answer.STOP:
            return _session(run, plan, done, skipped, task.number)
        (done if answer is Answer.DONE else skipped).append(task.number)
    return _session(run, plan, done, skipped, None)


def _expected(
    run: ConsoleRun, task: Task, entry: Mapping[str, str] | None, remaining: tuple[Task, ...]
) -> UserSpec | None:
    user = run.user(task.api_user)
    if user is None or task.kind is Kind.DELETE:
        return None
    recorded = Recorded.from_state(entry) if entry and task.kind is not Kind.CREATE else None
    return interim(user, recorded, remaining)


def _work(run: ConsoleRun, operator: Operator, task: Task, expect: UserSpec | None) -> Answer:
    """Ask until the change verifies, or the operator skips or stops."""
    reveal = _key_once(run, task)
    while True:
        answer = operator.ask(task, reveal)
        _remember_step(run, task, answer)
        run.audit.write(
            event="console_step",
            api_user=task.api_user,
            action=task.kind.value,
            task=task.number,
            answer=answer.value,
        )
        if answer is not Answer.DONE:
            return answer
        verdict = verify_user(run, task.api_user, task.kind is Kind.DELETE, expect)
        record_verdict(run, verdict, task, expect)
        operator.saw(task, verdict)
        if verdict.ok:
            return Answer.DONE


def _remember_step(run: ConsoleRun, task: Task, answer: Answer) -> None:
    """The last answer for a user, in the state store beside what was verified (a session that
    stops, or a machine that goes away, leaves where it was)."""
    step = f"{task.kind.value} {answer.value} {now_stamp()}"
    update(run.store, {task.api_user.lower(): {STATE_STEP: step}})


def _key_once(run: ConsoleRun, task: Task) -> Callable[[], str | None]:
    shown = not task.needs_key

    def reveal() -> str | None:
        nonlocal shown
        if shown:
            return None
        shown = True
        key = run.key(task.api_user)
        run.audit.write(
            event="console_key_shown", api_user=task.api_user, task=task.number, shown=key is not None
        )
        return key.reveal() if key is not None else None

    return reveal


def _session(
    run: ConsoleRun, plan: Checklist, done: list[int], skipped: list[int], stopped: int | None
) -> Session:
    run.audit.write(
        event="console_session",
        done=done,
        skipped=skipped,
        stopped_at=stopped,
        total=len(plan.tasks),
        probes=run.transport.probes,
        failed_authentications=run.transport.failed_authentications,
    )
    return Session(
        tuple(done),
        tuple(skipped),
        stopped,
        len(plan.tasks),
        run.transport.probes,
        run.transport.failed_authentications,
    )
