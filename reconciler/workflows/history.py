"""The `history` workflow: the backend's own log of every write to its API users (contract 2.1):
who, from which run and commit of the reconciler, or via the API (the console) without one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.errors import ReconcilerError
from reconciler.model import Operation
from reconciler.workflows.context import Run


def history(run: Run, *, since: float, api_user: str | None, limit: int) -> tuple[datetime, list[Operation]]:
    """The writes of the last `since` seconds, newest first, and where that window starts."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=since)
    log = run.backend.operation_log
    if log is None:
        raise ReconcilerError(
            f"the {run.backend.name} backend at {run.settings.api_url} keeps no operation log (a "
            "service that predates contract 2.1); only this checkout's .reconciler/audit.jsonl is there "
            "(`reconciler status`)"
        )
    return start, log.operations(since=start, api_user=api_user, limit=limit)
