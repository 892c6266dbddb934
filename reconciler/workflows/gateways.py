"""A mail gateway's account of its renders: every outcome of the mail step goes to the audit log,
and a gateway named by RECONCILER_GATEWAY_NAME reports what it serves to the service
(`PUT /gateways/{name}`, docs/contract.md "Gateway reports"), so `status` can show which gateways
lag behind and `reconcile --wait-gateways` can wait for them.

The pure parts (the report body, who is behind) are separate from the effects, which go through
the run: its audit log (reconciler.run.audit) and its backend's gateway reports.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import reconciler
from reconciler.errors import ReconcilerError, ValidationFailed
from reconciler.mail import MailReport
from reconciler.mail.install import RolledBack
from reconciler.mail.served import read_served
from reconciler.run.audit import AuditLog
from reconciler.run.git import commits_between, is_commit_id
from reconciler.safetext import terminal
from reconciler.workflows.context import Run

Result = Literal["ok", "failed", "rolled_back"]
RESULTS = ("ok", "failed", "rolled_back")
DIGEST_RE = re.compile(r"[0-9a-f]{64}")  # sha-256 hex, as DesiredState.digest
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # Settings.gateway_name


@dataclass(frozen=True)
class MailStepRecord:
    """One run of the mail step, as the audit log and the service hear about it."""

    result: Result
    report: MailReport | None  # None when it failed
    error: str | None = None


def run_recorded(run: Run, render: Callable[[], MailReport], *, mail_dir: Path) -> MailReport:
    """Run the mail step; whatever happens, write its outcome to the audit log and (for a named
    gateway) report it to the backend. A failure is re-raised after both."""
    try:
        report = render()
    except ReconcilerError as exc:
        _record(run, MailStepRecord(_failure(exc), None, str(exc)), mail_dir)
        raise
    _record(run, MailStepRecord("ok", report), mail_dir)
    return report


def _failure(exc: ReconcilerError) -> Result:
    return "rolled_back" if isinstance(exc, RolledBack) else "failed"


def _record(run: Run, step: MailStepRecord, mail_dir: Path) -> None:
    commit = run.identity.commit
    digest = run.desired.digest
    audit = AuditLog(run.state_dir, {"commit": commit})
    audit.write(**audit_entry(step, mail_dir, digest))
    name = run.settings.gateway_name
    if name is None:
        return
    users = step.report.users if step.report is not None else len(read_served(mail_dir))
    body = report_body(step.result, commit=commit, digest=digest, smtp_users=users)
    try:
        reports = run.backend.gateways
        if reports is None:
            backend = run.backend.name
            run.reporter.warning(f"gateway {name} is not reported: the {backend} backend keeps no reports")
            return
        reports.report(name, body)
    except ReconcilerError as exc:
        # The gateway serves what it rendered either way; the fleet view is only stale.
        run.reporter.warning(f"could not report gateway {name} to the service: {exc}")


def audit_entry(run: MailStepRecord, mail_dir: Path, digest: str) -> dict[str, Any]:
    """Names and counts only: never a key or a hash."""
    entry: dict[str, Any] = {
        "action": "mail",
        "mail_dir": str(mail_dir),
        "desired_digest": digest,
        "outcome": run.result,
    }
    if run.report is not None:
        report = run.report
        entry |= {
            "changed": list(report.changed),
            "keys_hashed": report.hashes,
            "smtp_users": report.users,
            "reloaded": list(report.reloaded),
            "smoke_checks": list(report.smoke),
            "warnings": list(report.warnings),
        }
    if run.error is not None:
        entry["detail"] = run.error
    return entry


def report_body(result: Result, *, commit: str | None, digest: str, smtp_users: int) -> dict[str, Any]:
    return {
        "commit": commit,
        "desired_digest": digest,
        "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": result,
        "smtp_users": smtp_users,
        "version": reconciler.__version__,
    }


# --- the fleet view -----------------------------------------------------------------------------


def with_behind(
    gateways: Sequence[Mapping[str, Any]],
    digest: str | None,
    commits_behind: Callable[[str], int | None] = lambda _commit: None,
) -> list[dict[str, Any]]:
    """Each gateway with `behind`: its digest differs from `digest` (the users/ of the checkout
    asking), or its last render did not succeed. With no local digest (users/ is invalid) only
    the result counts. `commits_behind` says how many commits of this checkout a gateway's commit
    lacks (None when unknown)."""
    fields = ("name", "commit", "desired_digest", "result", "smtp_users", "rendered_at", "reported_at")
    rows = []
    for gateway in map(checked_report, gateways):
        commit = gateway.get("commit")
        rows.append(
            {
                **{name: gateway.get(name) for name in fields},
                "behind": gateway.get("result") != "ok"
                or (digest is not None and gateway.get("desired_digest") != digest),
                "commits_behind": commits_behind(commit) if isinstance(commit, str) else None,
            }
        )
    return rows


def checked_report(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A report as the service returned it, each field checked for its shape: anyone who may
    report can write anything there, and a commit reaches git and every field a terminal. A field
    of the wrong shape reads as null; a malformed commit, digest or result makes the gateway count
    as behind (its result or digest does not match)."""
    commit = raw.get("commit")
    believed = commit is None or _is_commit(commit)  # a malformed commit discredits the report
    return {
        "name": _matching(raw.get("name"), NAME_RE)
        or "(invalid name) " + terminal(str(raw.get("name")))[:120],
        "commit": commit if believed else None,
        "desired_digest": _matching(raw.get("desired_digest"), DIGEST_RE),
        "result": raw.get("result") if believed and raw.get("result") in RESULTS else None,
        "smtp_users": _count(raw.get("smtp_users")),
        "rendered_at": _timestamp(raw.get("rendered_at")),
        "reported_at": _timestamp(raw.get("reported_at")),
    }


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _is_commit(value: Any) -> bool:
    return isinstance(value, str) and is_commit_id(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.isprintable() else None


def laggards(gateways: Sequence[Mapping[str, Any]], digest: str) -> list[str]:
    return [str(g["name"]) for g in with_behind(gateways, digest) if g["behind"]]


def wait_for_gateways(
    fetch: Callable[[], list[dict[str, Any]]],
    digest: str,
    timeout: float,
    *,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Poll until every reporting gateway serves `digest` with result ok; the laggards' names
    when `timeout` runs out (empty when all caught up)."""
    deadline = clock() + timeout
    while True:
        behind = laggards(fetch(), digest)
        if not behind or clock() >= deadline:
            return behind
        sleep(min(poll, max(0.0, deadline - clock())))


def text_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["Gateways: none has reported (set RECONCILER_GATEWAY_NAME on each gateway)"]
    lines = [f"Gateways: {len(rows)}, {sum(1 for r in rows if r['behind'])} behind"]
    for row in rows:
        state = "BEHIND" if row["behind"] else "current"
        if row.get("commits_behind"):
            state += f" by {row['commits_behind']} commit(s)"
        commit = (row["commit"] or "-")[:12]
        lines.append(
            f"  {row['name']}: {state}, last result {row['result']}, commit {commit}, "
            f"digest {str(row['desired_digest'])[:12]}, reported {row['reported_at']}"
        )
    return lines


def gateway_status(run: Run) -> tuple[list[dict[str, Any]], bool]:
    """Every gateway's last report with `behind` against this checkout's users/ (for text and
    JSON); False when the backend cannot be asked."""
    try:
        digest: str | None = run.desired.digest
    except ValidationFailed:
        digest = None  # then only a failed last render counts as behind
    try:
        reports = run.backend.gateways
        found = reports.list() if reports is not None else []
    except ReconcilerError:
        return [], False
    return with_behind(found, digest, lambda c: commits_between(run.users_dir, c)), True


def wait_for_run_gateways(run: Run, timeout: float) -> list[str]:
    """`--wait-gateways`: the gateways still behind this users/ after `timeout` seconds."""
    reports = run.backend.gateways
    if reports is None:
        return []
    return wait_for_gateways(reports.list, run.desired.digest, timeout)
