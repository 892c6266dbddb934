"""Executing a Plan through a backend's users (the seam's `Users`): phase by phase, bounded
concurrency, an outcome for every change, reported the moment it completes (progress, outcome
table and audit move with the run, not once per phase). Access is removed last: locks and deletes
run only when everything before them succeeded, so a half-finished run never leaves fewer ways in
than it found."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from reconciler.errors import ChangedSincePlan, LeaseLost, NotFound, ReconcilerError
from reconciler.model import LiveUser
from reconciler.plan import (
    FINGERPRINT_ANNOTATION,
    KEY_SOURCE_ANNOTATION,
    KEY_UPDATED_ANNOTATION,
    PHASES,
    Action,
    Change,
    Plan,
)
from reconciler.secrets import ApiKey


class Writer(Protocol):
    """What apply needs of a backend: its `users` (the seam's `Users` protocol, structurally, so
    the core imports no backend) and `use_api_key` for the reconciler's own key."""

    @property
    def users(self) -> UserWrites: ...

    def use_api_key(self, api_key: ApiKey) -> None: ...


class UserWrites(Protocol):
    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser: ...

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser: ...

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser: ...

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser: ...

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser: ...

    def delete(self, api_user: str, *, if_match: str | None = None) -> None: ...


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    CHANGED = "changed"  # changed on the service since the plan (412): left as it is, never retried


@dataclass(frozen=True)
class Outcome:
    """What happened to one change. `intent` is the id of its write-ahead audit line, when one
    was written before the change was sent."""

    change: Change
    status: Status
    detail: str = ""
    intent: str | None = None


ACCESS_REMOVING = frozenset({Action.LOCK, Action.DELETE})
NOT_STARTED = "not started: the run was interrupted"
# After a first SIGINT/SIGTERM, how long the changes already sent may take to finish.
DRAIN_SECONDS = 20.0


@dataclass(frozen=True)
class KeyMaterial:
    """The declared keys needed by a plan's creates and key changes, with their fingerprints."""

    keys: Mapping[str, ApiKey]
    fingerprints: Mapping[str, str]
    # The key-source digest of each age key (None: not age, remove a recorded one).
    sources: Mapping[str, str | None] = field(default_factory=dict)

    def for_user(self, api_user: str) -> tuple[ApiKey, str]:
        name = api_user.lower()
        return self.keys[name], self.fingerprints[name]

    def annotations(self, api_user: str) -> dict[str, str | None]:
        """What to record with the key: its fingerprint and where it came from."""
        name = api_user.lower()
        source = self.sources.get(name)
        return {FINGERPRINT_ANNOTATION: self.fingerprints[name], KEY_SOURCE_ANNOTATION: source}


@dataclass
class Hooks:
    """How apply tells the world about each change, as it happens.

    `on_start` runs on the worker right before the change is sent and returns the id of its
    intent (the write-ahead audit line): if it raises, the change is not sent. `on_outcome` runs on
    the calling thread as each change completes. `stop` is set by a first SIGINT/SIGTERM: no new
    change starts, the ones in flight get `drain_seconds` to finish.
    """

    on_start: Callable[[Change], str | None] | None = None
    on_outcome: Callable[[Outcome], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    drain_seconds: float = DRAIN_SECONDS


def apply_plan(
    plan: Plan,
    backend: Writer,
    material: KeyMaterial,
    *,
    concurrency: int = 8,
    on_outcome: Callable[[Outcome], None] | None = None,
    self_user: str | None = None,
    hooks: Hooks | None = None,
) -> list[Outcome]:
    """Apply phase by phase, reporting each outcome as it completes. A key change of `self_user`
    (the API user the backend authenticates as) runs last of all, and the backend switches to the
    new key right after it: every other request of the run still holds the old one."""
    hooks = hooks or Hooks()
    if on_outcome is not None:
        hooks.on_outcome = on_outcome
    own_key_change = _own_key_change(plan, self_user)
    # The version each user has now: the plan's, then the one our own writes made (an update and a
    # lock of one user are two writes; the second must not mistake the first for someone else's).
    versions = {c.api_user.lower(): c.version for c in plan.changes if c.version}
    run = _Run(backend, material, hooks, _Workers(concurrency), versions)
    try:
        for phase in PHASES:
            batch = [c for c in plan.by_action(phase) if c is not own_key_change]
            if phase in ACCESS_REMOVING and any(o.status is not Status.OK for o in run.outcomes):
                run.skip(batch, "an earlier change failed; access is removed last")
            else:
                run.phase(batch)
        if own_key_change is not None:
            run.phase([own_key_change], own=True)
    finally:
        run.workers.close()
    return run.outcomes


@dataclass
class _Run:
    backend: Writer
    material: KeyMaterial
    hooks: Hooks
    workers: _Workers
    versions: dict[str, str]
    outcomes: list[Outcome] = field(default_factory=list)

    def phase(self, batch: Sequence[Change], *, own: bool = False) -> None:
        """Run one phase's changes on the workers; report each as it completes."""
        if self.hooks.stop.is_set():
            self.skip(batch, NOT_STARTED)
            return
        for change in batch:
            self.workers.submit(partial(self._start, change, own))
        for outcome in self.workers.results(len(batch), self.hooks):
            self.report(outcome)

    def _start(self, change: Change, own: bool) -> Outcome:
        if self.hooks.stop.is_set():
            return Outcome(change, Status.SKIPPED, NOT_STARTED)
        try:
            intent = self.hooks.on_start(change) if self.hooks.on_start else None
        except Exception as exc:  # no intent recorded: the change must not be sent
            return Outcome(change, Status.FAILED, f"not sent: the audit log failed ({type(exc).__name__})")
        return replace(_run(change, self.backend, self.material, self.versions, own=own), intent=intent)

    def skip(self, batch: Sequence[Change], why: str) -> None:
        for change in batch:
            self.report(Outcome(change, Status.SKIPPED, why))

    def report(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.hooks.on_outcome is not None:
            self.hooks.on_outcome(outcome)


class _Workers:
    """A fixed set of daemon threads. Daemon threads, unlike ThreadPoolExecutor's, let a second
    SIGINT/SIGTERM end the process at once even while a request is in flight."""

    def __init__(self, count: int) -> None:
        self.count = max(count, 1)
        self.jobs: queue.SimpleQueue[Callable[[], Outcome] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.started = 0

    def submit(self, job: Callable[[], Outcome]) -> None:
        if self.started < self.count:
            threading.Thread(target=self._serve, name=f"apply-{self.started}", daemon=True).start()
            self.started += 1
        self.jobs.put(job)

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            self.done.put(job())

    def close(self) -> None:
        """Let each thread leave once it is idle (one still in flight finishes its change first)."""
        for _ in range(self.started):
            self.jobs.put(None)

    def results(self, count: int, hooks: Hooks) -> Iterator[Outcome]:
        """`count` outcomes as they complete. Once `stop` is set, waits at most drain_seconds
        for the rest (queued ones finish at once as not started), then leaves them unreported."""
        deadline: float | None = None
        for _ in range(count):
            while True:
                if deadline is None and hooks.stop.is_set():
                    deadline = time.monotonic() + hooks.drain_seconds
                try:
                    # A short timeout keeps the main thread responsive to signals.
                    yield self.done.get(timeout=0.1)
                    break
                except queue.Empty:
                    if deadline is not None and time.monotonic() > deadline:
                        return


def _own_key_change(plan: Plan, self_user: str | None) -> Change | None:
    me = (self_user or "").lower()
    return next((c for c in plan.by_action(Action.UPDATE) if c.key_change and c.api_user.lower() == me), None)


def _run(
    change: Change, backend: Writer, material: KeyMaterial, versions: dict[str, str], *, own: bool = False
) -> Outcome:
    try:
        _execute(change, backend, material, versions, own=own)
    except ChangedSincePlan:
        return Outcome(change, Status.CHANGED, CHANGED_DETAIL)
    except LeaseLost as exc:
        return Outcome(change, Status.FAILED, f"not applied: the run's lease was lost ({exc})")
    except ReconcilerError as exc:
        return Outcome(change, Status.FAILED, str(exc))
    except Exception as exc:  # a bug must not abort the run: the other changes still get reported
        return Outcome(change, Status.FAILED, f"unexpected {type(exc).__name__}")
    return Outcome(change, Status.OK)


CHANGED_DETAIL = (
    "changed since the plan: someone changed this user on the service after the plan was made; "
    "it was left as it is. Run the plan again to see the new state"
)


def _execute(
    change: Change, backend: Writer, material: KeyMaterial, versions: dict[str, str], *, own: bool = False
) -> None:
    name = change.api_user
    seen = versions.get(name.lower())  # sent as If-Match: only the state the plan showed is changed
    users = backend.users
    if change.action is Action.CREATE:
        key, _ = material.for_user(name)
        notes = {k: v for k, v in material.annotations(name).items() if v is not None}
        created = users.create(name, change.new_values(), key, notes)
        _remember(versions, _record_key_time(backend, created))
    elif change.action is Action.UPDATE:
        _remember(versions, _update(change, backend, material, seen, own=own))
    elif change.action is Action.LOCK:
        _remember(versions, users.lock(name, if_match=seen))
    elif change.action is Action.UNLOCK:
        _remember(versions, users.unlock(name, if_match=seen))
    else:
        # Already gone is the desired outcome, e.g. on a rerun after a lost response.
        with contextlib.suppress(NotFound):
            users.delete(name, if_match=seen)


def _remember(versions: dict[str, str], user: LiveUser) -> None:
    if user.version:
        versions[user.api_user.lower()] = user.version


def _update(
    change: Change, backend: Writer, material: KeyMaterial, seen: str | None, *, own: bool = False
) -> LiveUser:
    if not change.key_change:
        return backend.users.update(change.api_user, change.new_values(), if_match=seen)
    key, _ = material.for_user(change.api_user)
    notes = material.annotations(change.api_user)
    updated = backend.users.set_key(
        change.api_user, key, changes=change.new_values(), annotations=notes, if_match=seen
    )
    if own:
        backend.use_api_key(key)
    return _record_key_time(backend, updated)


def _record_key_time(backend: Writer, user: LiveUser) -> LiveUser:
    """Record the service's own key_updated_at: comparing against it later tells a key changed in
    the console apart from ours exactly, with no clock-skew guesswork."""
    stamp = user.key_updated_at.isoformat() if user.key_updated_at else None
    notes: dict[str, str | None] = {KEY_UPDATED_ANNOTATION: stamp}
    return backend.users.update(user.api_user, {}, annotations=notes, if_match=user.version)


def needs_keys(plan: Plan) -> list[str]:
    """api_users (lowercased) whose declared key the plan must send."""
    return sorted({c.api_user.lower() for c in plan.changes if c.key_change})


def failed(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status is not Status.OK]
