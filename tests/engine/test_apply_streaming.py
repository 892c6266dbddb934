"""apply reports each change the moment it completes (not once per phase), writes an intent
before sending it, and stops starting changes once asked to, against the real service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reconciler.backend.http import HttpBackend
from reconciler.executor import NOT_STARTED, Hooks, KeyMaterial, Outcome, Status, apply_plan
from reconciler.plan import Action, Change, FieldChange, Plan
from tests.fixtures.service import RunningService


def _updates(service: RunningService, count: int) -> Plan:
    from reconciler.secrets import ApiKey
    from tests.fixtures.service import new_key

    with service.client() as client:
        for i in range(count):
            client.create_user(f"u{i:02d}@example.com", {"role": "normal"}, ApiKey(new_key()), {})
    changes = tuple(
        Change(Action.UPDATE, f"u{i:02d}@example.com", (FieldChange("description", None, f"d{i}"),))
        for i in range(count)
    )
    return Plan(changes, desired_digest="", live_versions={})


def _apply(service: RunningService, plan: Plan, hooks: Hooks) -> list[Outcome]:
    with service.client() as client:
        return apply_plan(plan, HttpBackend(client), KeyMaterial({}, {}), concurrency=2, hooks=hooks)


def test_each_outcome_is_reported_before_the_phase_ends(start_service: Callable[..., RunningService]) -> None:
    service = start_service(smtp=False)
    plan = _updates(service, 12)
    service.faults.latency_ms = 30
    started: list[float] = []
    reported: list[float] = []

    def on_start(change: Change) -> str:
        started.append(time.monotonic())
        return change.api_user

    hooks = Hooks(on_start=on_start, on_outcome=lambda _o: reported.append(time.monotonic()))
    outcomes = _apply(service, plan, hooks)
    assert [o.status for o in outcomes] == [Status.OK] * 12
    assert all(o.intent == o.change.api_user for o in outcomes)  # each outcome carries its intent
    assert min(reported) < max(started)  # the first was reported while the phase was still running


def test_once_stopped_no_new_change_starts_and_in_flight_ones_finish(
    start_service: Callable[..., RunningService],
) -> None:
    service = start_service(smtp=False)
    plan = _updates(service, 12)
    service.faults.latency_ms = 100
    stop = threading.Event()
    sent: list[str] = []

    def on_start(change: Change) -> None:
        sent.append(change.api_user)
        stop.set()  # a signal arrives as the first changes go out

    outcomes = _apply(service, plan, Hooks(on_start=on_start, stop=stop))
    by_status = {s: [o for o in outcomes if o.status is s] for s in Status}
    assert len(by_status[Status.OK]) == len(sent) <= 2  # at most the two already in the workers
    assert all(o.detail == NOT_STARTED for o in by_status[Status.SKIPPED])
    assert len(outcomes) == 12
    with service.client() as client:
        described = [u.api_user for u in client.list_users() if u.api_user.startswith("u") and u.description]
    assert sorted(described) == sorted(sent)
