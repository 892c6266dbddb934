"""The `status` workflow: the on-call overview of desired vs live state, the lease and local
locks, the gateways and the last audit entries. Each part is a `Section` with its text lines and
the same facts for `--format json` (a top-level key of the status document)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError, ValidationFailed
from reconciler.output import lease_to_json, plan_summary_json, summary_line
from reconciler.run.audit import AuditLog
from reconciler.run.lease import LEASE_NAME
from reconciler.run.lock import STALE_AFTER, LockInfo, lock_path, read_lock
from reconciler.tables import aligned, printable
from reconciler.workflows import keys as keyring
from reconciler.workflows.context import Run
from reconciler.workflows.gateways import gateway_status, text_lines
from reconciler.workflows.planning import compute_plan, guards_from, observe

AUDIT_ENTRIES = 10


@dataclass(frozen=True)
class Section:
    lines: tuple[str, ...]
    ok: bool = True
    # The same facts for `--format json`: a top-level key of the status document (status_to_json).
    data: dict[str, Any] = field(default_factory=dict)


def overview(run: Run, entries: int) -> tuple[bool, list[Section]]:
    """Each part of the on-call overview, each shown even when another fails (a broken users/
    file or an unreachable service); True when every part could be read."""
    settings = run.settings
    sections = [
        _drift_section(run),
        _lease_section(run),
        _lock_section(run.state_dir, settings.api_url),
        _gateways_section(run),
        _audit_section(run.state_dir, entries),
    ]
    return all(s.ok for s in sections), sections


def _drift_section(run: Run) -> Section:
    users_dir, settings = run.users_dir, run.settings
    desired_json: dict[str, Any] = {"ok": False, "users_dir": str(users_dir), "users": None, "problems": 0}
    live_json: dict[str, Any] = {"ok": None, "service": settings.api_url, "users": None, "error": None}
    drift_json: dict[str, Any] = {
        "checked": False,
        "drift": None,
        "summary": None,
        "changes": [],
        "notes": [],
    }
    data = {"desired": desired_json, "live": live_json, "drift": drift_json}
    try:
        desired = run.desired
    except ValidationFailed as exc:
        desired_json["problems"] = len(exc.problems)
        return Section(
            (f"Desired: INVALID, {len(exc.problems)} problem(s); run `reconciler validate`",), False, data
        )
    desired_json.update(ok=True, users=len(desired.users))
    lines = [f"Desired: {len(desired.users)} user(s) in {users_dir}"]
    try:
        live = observe(run)
    except ReconcilerError as exc:
        live_json.update(ok=False, error=str(exc))
        return Section((*lines, f"Live:    UNAVAILABLE: {exc}"), False, data)
    live_json.update(ok=True, users=len(live))
    lines.append(f"Live:    {len(live)} user(s) on {settings.api_url}")
    resolved = keyring.resolve_keys(desired)
    if resolved.unusable:
        drift_json["notes"] = [f"unusable key: {p}" for p in resolved.unusable]
        bad = [f"Keys:    UNUSABLE: {p}" for p in resolved.unusable]
        return Section((*lines, *bad, "         `reconciler plan` fails until these are fixed"), False, data)
    plan = compute_plan(
        desired,
        live,
        resolved,
        settings=settings,
        guards=guards_from(settings),
        backend=run.backend,
    )
    drift_json.update(
        checked=True,
        drift=bool(plan.changes),
        summary=plan_summary_json(plan),
        changes=[{"action": c.action.value, "api_user": c.api_user} for c in plan.changes],
        notes=list(plan.notes),
    )
    drift = "no" if not plan.changes else "YES: " + summary_line(plan) + " Run `reconciler plan`."
    lines.append(f"Drift:   {drift}")
    lines += [f"Note:    {note}" for note in plan.notes]
    return Section(tuple(lines), data=data)


def _gateways_section(run: Run) -> Section:
    rows, ok = gateway_status(run)
    if not ok:
        return Section(("Gateways: UNAVAILABLE (the service cannot be asked)",), False, {"gateways": []})
    return Section(tuple(text_lines(rows)), data={"gateways": rows})


def _lease_section(run: Run) -> Section:
    """The service's lease (contract 2.1): who runs apply/reconcile anywhere right now."""
    try:
        leases = run.backend.leases
        lease = leases.get(LEASE_NAME) if leases is not None else None
    except ReconcilerError as exc:
        data = {"lease": lease_to_json(LEASE_NAME, None, error=str(exc))}
        return Section((f"Lease:   UNAVAILABLE: {exc}",), False, data)
    data = {"lease": lease_to_json(LEASE_NAME, lease)}
    if lease is None:
        return Section((f"Lease:   '{LEASE_NAME}' on the service is free",), data=data)
    expires = lease.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Section(
        (f"Lease:   '{LEASE_NAME}' held by {lease.describe()}, expires {expires} unless renewed",), data=data
    )


def _lock_section(state_dir: Path, service: str) -> Section:
    """The service's lock and any other lock in the state dir (a gateway's mail-directory lock)."""
    paths = sorted(
        p for p in {lock_path(state_dir, service), *state_dir.glob("reconcile-*.lock")} if p.exists()
    )
    lines = [_describe_lock(path) for path in paths]
    return Section(tuple(lines) or ("Lock:    free",), data={"locks": [_lock_json(p) for p in paths]})


def _lock_json(path: Path) -> dict[str, Any]:
    info = read_lock(path)
    if info is None:
        return {"file": str(path), "readable": False, "stale": True}
    age = _age(info)
    return {
        "file": str(path),
        "readable": True,
        **asdict(info),
        "stale": age is None or age > STALE_AFTER,
    }


def _describe_lock(path: Path) -> str:
    info = read_lock(path)
    if info is None:
        return f"Lock:    {path} exists but is unreadable (a crashed run); the next run takes it over"
    return f"Lock:    {info.service} held by {info.describe()}{_lock_age(info)}\n         file {path}"


def _age(info: LockInfo) -> timedelta | None:
    try:
        return datetime.now(UTC) - datetime.fromisoformat(info.started_at)
    except ValueError:
        return None


def _lock_age(info: LockInfo) -> str:
    age = _age(info)
    if age is None:
        return ""
    minutes = int(age.total_seconds() // 60)
    stale = "; STALE, the next run takes it over" if age > STALE_AFTER else ""
    return f", {minutes} min ago{stale}"


def _audit_section(state_dir: Path, count: int) -> Section:
    log = AuditLog(state_dir, {})
    read = log.read()
    # A line cut off by a crash is reported and skipped; the lines around it still count.
    damaged = [f"  line {n} of {log.path} is not JSON (cut off by a crash?); skipped" for n in read.damaged]
    unknown = read.unsettled()
    notes = [f"  {len(unknown)} change(s) with outcome unknown: the next plan or apply settles them"]
    tail = read.shown()[-count:]
    data: dict[str, Any] = {
        "file": str(log.path),
        "ok": True,
        "entries": tail,
        "outcome_unknown": len(unknown),
        "damaged_lines": read.damaged,
    }
    if not tail:
        return Section((f"Audit:   no entries in {log.path}", *damaged), data={"audit": data})
    table = aligned(("WHEN", "BY", "ACTION", "API USER", "OUTCOME"), [_audit_row(e) for e in tail])
    lines = (f"Audit:   last {len(tail)} of {log.path}", *(printable("  " + line) for line in table))
    return Section((*lines, *(notes if unknown else []), *damaged), data={"audit": data})


def _audit_row(entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """One row per audit entry; a mail-step entry names its mail directory where a change names its
    API user, and what it changed."""
    when = str(entry.get("time", "?"))[:19].replace("T", " ")
    action = str(entry.get("action", "?")) + (" +key" if entry.get("key_change") else "")
    outcome = str(entry.get("outcome", "?"))
    if entry.get("action") == "mail":
        subject = f"mail dir {entry.get('mail_dir', '?')}"
        changed = entry.get("changed")
        outcome += f" ({len(changed)} file(s) changed)" if isinstance(changed, list) else ""
    else:
        subject = str(entry.get("api_user", "?"))
    outcome += f" ({entry['detail']})" if entry.get("detail") else ""
    return when, str(entry.get("actor", "-")), action, subject, outcome
