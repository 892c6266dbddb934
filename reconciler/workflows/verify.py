"""The console backend's read side: the checklist a person must work through, and `verify`.

One `ConsoleRun` per command: the declared state (one snapshot), the backend's transport, the
state store (what was verified; the set of users, since the console has no list) and the audit
log. Probing is bounded: only users with a change, or named by `--target`; never with the key of a
user declared deleted (its file is gone, so is its key); at most one Transactional Email request
per user and run; at RECONCILER_CMC_PROBE_RATE.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from reconciler.backend import registry
from reconciler.backend.base import Backend, StateStore
from reconciler.backend.cmc import CmcBackend
from reconciler.backend.cmc.checklist import Checklist, render_json, render_markdown, render_text
from reconciler.backend.cmc.expect import mismatches, observable
from reconciler.backend.cmc.steps import (
    STATE_AT,
    ConsoleOperation,
    Kind,
    Task,
    after_console,
    record,
    tasks,
)
from reconciler.backend.cmc.transport import ProbeResult, Transport
from reconciler.config import Settings
from reconciler.desired import DesiredState
from reconciler.errors import ReconcilerError, ValidationFailed
from reconciler.model import UserSpec
from reconciler.run.audit import AuditLog
from reconciler.run.identity import actor, run_id
from reconciler.secrets import ApiKey, ResolvedKeys, fingerprint
from reconciler.workflows.console_state import open_store, update
from reconciler.workflows.keys import key_fingerprint_secret

# The CLI imports workflows only: what it shows of the console plan comes through here.
__all__ = [
    "Checklist",
    "ConsoleRun",
    "Task",
    "Verdict",
    "checklist",
    "is_console",
    "open_run",
    "render_json",
    "render_markdown",
    "render_text",
    "verify",
]

AUDIT_ENTRY = "#cmc-audit"  # not an email address: never a user's entry
STAMP = "%Y-%m-%d %H:%M:%S"


def now_stamp() -> str:
    return datetime.now(UTC).strftime(STAMP)


class KeySource(Protocol):
    def resolve(self, names: Iterable[str] | None = None) -> ResolvedKeys: ...


class Context(Protocol):
    """What a console workflow needs of the command's run: one snapshot of settings, users/ and
    their keys (each key resolved once)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def users_dir(self) -> Path: ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def desired(self) -> DesiredState: ...

    @property
    def keys(self) -> KeySource: ...


@dataclass
class ConsoleRun:
    context: Context
    transport: Transport
    store: StateStore
    audit: AuditLog
    secret: bytes | None
    http_probed: set[str] = field(default_factory=set)
    audit_records: list[dict[str, Any]] | None = None  # read once per run (or on purpose again)

    def user(self, name: str) -> UserSpec | None:
        return next((u for u in self.context.desired.users if u.api_user.lower() == name.lower()), None)

    def key(self, name: str) -> ApiKey | None:
        return self.context.keys.resolve([name]).keys.get(self._declared(name))

    def _declared(self, name: str) -> str:
        user = self.user(name)
        return user.api_user if user is not None else name

    def fingerprint(self, name: str) -> str | None:
        key = self.key(name)
        return fingerprint(key, self.secret) if key is not None and self.secret is not None else None

    def close(self) -> None:
        self.transport.close()


def is_console(settings: Settings) -> bool:
    """True when the configured backend cannot write (its declared capabilities: no connection)."""
    return not registry.factory(settings.backend).capabilities.can_write


def open_run(context: Context, command: str, backend: Backend | None = None) -> ConsoleRun:
    """The console workflows' run over the command's `context` (and its backend, if opened)."""
    settings = context.settings
    backend = backend if backend is not None else registry.open_backend(settings)
    backend = getattr(backend, "inner", backend)  # under a state-store wrapper: the console backend
    if not isinstance(backend, CmcBackend):
        backend.close()
        raise ReconcilerError(f"backend {settings.backend} has no guided session")
    try:
        secret: bytes | None = key_fingerprint_secret(settings)
    except ReconcilerError:  # no admin key and no fingerprint secret: key changes cannot be told apart
        secret = None
    identity = {"run": run_id(), "actor": actor()}
    store = open_store(settings, context.users_dir)
    audit = AuditLog(context.state_dir, {**identity, "command": command, "backend": "cmc-console"})
    return ConsoleRun(context, backend.transport, store, audit, secret)


def scope(targets: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda name: not targets or any(fnmatch.fnmatch(name.lower(), t.lower()) for t in targets)


def console_drift(
    run: ConsoleRun, users: Mapping[str, Mapping[str, str]]
) -> dict[str, tuple[ConsoleOperation, ...]]:
    """Console operations on known users after each one's last verification, from the audit log
    (read at most every `cmc_audit_interval_hours`, cached in the state store)."""
    if run.transport.admin_user is None:
        return {}
    records = _audit_records(run, users)
    drift: dict[str, list[ConsoleOperation]] = {}
    for op in map(ConsoleOperation.from_record, records):
        name = op.target.lower()
        verified = users.get(name, {}).get(STATE_AT)
        if verified is not None and op.created > verified:
            drift.setdefault(name, []).append(op)
    return {name: tuple(ops) for name, ops in drift.items()}


def _audit_records(run: ConsoleRun, users: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    if run.audit_records is None:
        run.audit_records = _read_audit_log(run, users)
    return run.audit_records


def _read_audit_log(
    run: ConsoleRun, users: Mapping[str, Mapping[str, str]], *, fresh: bool = False
) -> list[dict[str, Any]]:
    cached = run.store.read().users.get(AUDIT_ENTRY, {})
    interval = timedelta(hours=run.context.settings.cmc_audit_interval_hours)
    fetched = cached.get("fetched_at")
    if (
        not fresh
        and fetched
        and datetime.strptime(fetched, STAMP).replace(tzinfo=UTC) + interval > datetime.now(UTC)
    ):
        records: list[dict[str, Any]] = json.loads(cached.get("records", "[]"))
        return records
    stamps = [e[STATE_AT] for e in users.values() if STATE_AT in e]
    today = datetime.now(UTC).date()
    since = date.fromisoformat(min(stamps)[:10]) if stamps else today
    # Only what concerns this repository's users is kept: the state store may be a git ref.
    mine = set(users) | {u.api_user.lower() for u in run.context.desired.users}
    records = [
        r for r in run.transport.console_operations(since, today) if str(r.get("target", "")).lower() in mine
    ]
    update(run.store, {AUDIT_ENTRY: {"fetched_at": now_stamp(), "records": json.dumps(records)}})
    run.audit.write(event="console_audit_log_read", since=since.isoformat(), records=len(records))
    return records


def checklist(run: ConsoleRun, targets: tuple[str, ...] = ()) -> Checklist:
    """The changes a person must make, from users/ and the state store, with console drift."""
    snapshot = run.store.read()
    known = {k: v for k, v in snapshot.users.items() if not k.startswith("#")}
    drift = console_drift(run, known)
    effective = dict(known)
    for name, ops in drift.items():
        for op in ops:
            effective[name] = after_console(effective.get(name, {}), op.operation)
    users = run.context.desired.users
    in_scope = [u.api_user for u in users if scope(targets)(u.api_user)]
    resolved = run.context.keys.resolve(in_scope)
    if resolved.unusable:  # a key that is there and wrong fails the plan, not the session after the merge
        raise ValidationFailed(list(resolved.unusable))
    fps = {name: run.fingerprint(name) for name in in_scope}
    described = {n: tuple(op.describe() for op in ops) for n, ops in drift.items()}
    found = tasks(users, fps, effective, described, scope(targets))
    lines = tuple(f"{n}: {d}" for n, ds in sorted(described.items()) for d in ds)
    notes = () if run.secret is not None else ("key changes are not detected: no fingerprint secret",)
    return Checklist(tuple(found), lines, notes, run.transport.probes, run.transport.failed_authentications)


def probe(run: ConsoleRun, user: UserSpec, key: ApiKey) -> list[ProbeResult]:
    """SMTP always; the Transactional Email request once per user and run."""
    results = [run.transport.smtp_probe(user.api_user, key)]
    if user.api_user.lower() not in run.http_probed:
        run.http_probed.add(user.api_user.lower())
        results.append(run.transport.http_probe(user.api_user, key))
    return results


@dataclass(frozen=True)
class Verdict:
    api_user: str
    ok: bool
    lines: tuple[str, ...]  # what the probes saw, or why nothing could be seen


def verify_user(run: ConsoleRun, name: str, deleted: bool = False, expect: UserSpec | None = None) -> Verdict:
    """Probe `name` and compare with `expect` (default: as declared)."""
    user = expect or run.user(name)
    if deleted or user is None:
        return Verdict(name, True, ("deleted: not probed (never with the key of a deleted user)",))
    key = run.key(name)
    if key is None:
        return Verdict(name, False, ("its key cannot be resolved here: not probed",))
    if not observable(user):
        return Verdict(
            name, True, ("nothing observable (locked, or neither HTTP-API nor SMTP): taken as done",)
        )
    results = probe(run, user, key)
    wrong = mismatches(user, results)
    return Verdict(name, not wrong, tuple(wrong) if wrong else tuple(str(r) for r in results))


def record_verdict(
    run: ConsoleRun, verdict: Verdict, task: Task | None = None, expect: UserSpec | None = None
) -> None:
    """A passing verification becomes the user's verified state; every verdict is audited."""
    run.audit.write(
        event="console_verify",
        api_user=verdict.api_user,
        action=task.kind.value if task else "verify",
        task=task.number if task else None,
        outcome="ok" if verdict.ok else "failed",
        detail=list(verdict.lines),
    )
    if not verdict.ok:
        return
    user = expect or run.user(verdict.api_user)
    name = verdict.api_user.lower()
    if user is None or (task is not None and task.kind is Kind.DELETE):
        update(run.store, {name: None})
    else:
        update(run.store, {name: record(user, run.fingerprint(user.api_user), now_stamp())})


def verify(run: ConsoleRun, targets: tuple[str, ...]) -> list[Verdict]:
    """`reconciler verify`: probe the users with a pending change (or those named by `--target`);
    every user that matches is recorded as verified. A delete is never probed: the console's
    audit log confirms it (read again once if the cached copy does not show it yet)."""
    pending = checklist(run, targets)
    if any(t.kind is Kind.DELETE for t in pending.tasks) and run.transport.admin_user is not None:
        known = _known(run)
        run.audit_records = _read_audit_log(run, known, fresh=True)
        pending = checklist(run, targets)
    names = {t.api_user.lower() for t in pending.tasks if t.kind is not Kind.DELETE}
    if targets:
        names |= {u.api_user.lower() for u in run.context.desired.users if scope(targets)(u.api_user)}
    verdicts = [verify_user(run, name) for name in sorted(names)]
    for verdict in verdicts:
        record_verdict(run, verdict)
    return verdicts + _deletes(run, pending, targets)


def _known(run: ConsoleRun) -> dict[str, Mapping[str, str]]:
    return {k: v for k, v in run.store.read().users.items() if not k.startswith("#")}


def _deletes(run: ConsoleRun, pending: Checklist, targets: tuple[str, ...]) -> list[Verdict]:
    """Users verified once whose file is gone: confirmed (and forgotten) when the audit log shows
    their Delete; still pending otherwise."""
    known = _known(run)
    drift = console_drift(run, known)
    declared = {u.api_user.lower() for u in run.context.desired.users}
    verdicts = []
    for name in sorted(set(known) - declared):
        deleted = [op for op in drift.get(name, ()) if op.operation == "delete"]
        if deleted and scope(targets)(name):
            verdicts.append(
                Verdict(name, True, (f"deleted: {deleted[-1].describe()} (audit log; not probed)",))
            )
    for task in pending.tasks:
        if task.kind is Kind.DELETE:
            why = (
                "no Delete of this user in the console's audit log yet (not probed: never with the key of "
                "a deleted user)"
                if run.transport.admin_user is not None
                else "a delete is not observable without the admin's audit log (RECONCILER_API_USER/KEY)"
            )
            verdicts.append(Verdict(task.api_user, False, (why,)))
    for verdict in verdicts:
        record_verdict(run, verdict, _delete_task(verdict.api_user))
    return verdicts


def _delete_task(name: str) -> Task:
    return Task(0, Kind.DELETE, name, ())
