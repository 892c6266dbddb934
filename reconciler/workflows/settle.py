"""Settling what an earlier run left unknown: intents of the write-ahead audit without an outcome
(the run died between sending a change and recording it), and the reconciler's own key rotated by
a run that lost the answer."""

from __future__ import annotations

from typing import Any

from reconciler.config import service_api_key
from reconciler.errors import ReconcilerError
from reconciler.plan import Plan, targeted
from reconciler.run.audit import AuditLog
from reconciler.run.git import git_commit
from reconciler.run.identity import actor
from reconciler.run.lease import LEASE_NAME
from reconciler.run.lock import lock_path
from reconciler.workflows.context import Reporter, Run


def audit_log(run: Run) -> AuditLog:
    return AuditLog(run.state_dir, audit_context(run))


def audit_context(run: Run) -> dict[str, Any]:
    return {"actor": actor(), "commit": git_commit(run.users_dir), "service": run.settings.api_url}


def settle_intents(
    audit: AuditLog, made: Plan, targets: tuple[str, ...], reporter: Reporter, *, quiet: bool = False
) -> None:
    """Intents left without an outcome by a run that died get one from this fresh plan: a change
    the plan no longer wants is in effect. Never fails the run: the log is a record, not a gate."""
    pending = {(c.api_user.lower(), c.action.value) for c in made.changes}
    try:
        settled = audit.settle(pending, lambda name: targeted(name, targets))
    except OSError as exc:
        reporter.warning(f"could not settle unknown outcomes in {audit.path}: {exc.strerror}")
        return
    if settled and not quiet:  # `plan` keeps its stdout for the plan (JSON, Markdown)
        reporter.info(f"Settled {settled} change(s) of an interrupted run in {audit.path}.")


def settle_if_no_run(run: Run, made: Plan, targets: tuple[str, ...]) -> None:
    """`plan` settles the intents a dead run left, but only when no run is going on: a running
    apply's intents without outcome are changes in flight, not orphans."""
    audit = audit_log(run)
    if not audit.path.exists() or not audit.read().unsettled():
        return
    try:
        leases = run.backend.leases
        running = leases is not None and leases.get(LEASE_NAME) is not None
    except ReconcilerError:
        return
    if running or lock_path(run.state_dir, run.settings.api_url).exists():
        return
    settle_intents(audit, made, targets, run.reporter, quiet=True)


def settle_rotated_key(run: Run) -> None:
    """An earlier run changed the reconciler's own key and lost the answer: the configured key is
    refused, but the one users/ declares for the reconciler's user works. Say so, and use it."""
    me = (run.settings.api_user or "").lower()
    if not any(u.api_user.lower() == me for u in run.desired.users):
        return
    try:
        declared = run.keys.resolve([me]).keys
    except ReconcilerError:
        return  # the run's own key resolution reports it
    key = next((k for name, k in declared.items() if name.lower() == me), None)
    configured = service_api_key(run.settings)
    if key is None or configured is None or key.reveal() == configured.get_secret_value():
        return
    if run.backend.settle_rotated_key(key):
        run.reporter.warning(
            f"the configured key of {run.settings.api_user} (RECONCILER_API_KEY) is refused, but the key "
            "its file in users/ declares is accepted: an earlier run rotated it. Continuing with the "
            "declared key; put it in RECONCILER_API_KEY (docs/runbook.md)."
        )
