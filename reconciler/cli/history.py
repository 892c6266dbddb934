"""`history`: the service's own log of every write to its API users (contract 2.1): who, from which
run and commit of the reconciler, or via the API (the console) without one."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import click

from reconciler.cli.common import (
    Duration,
    complete_api_users,
    emit_json,
    format_option,
    users_option,
)
from reconciler.errors import ExitCode
from reconciler.model import Operation
from reconciler.output import history_to_json
from reconciler.plan import SERVICE_ITSELF
from reconciler.tables import aligned, printable
from reconciler.workflows.context import SilentReporter, open_run
from reconciler.workflows.history import history as read_history


@click.command()
@users_option
@click.option(
    "--api-user",
    metavar="EMAIL",
    shell_complete=complete_api_users,
    help="Only writes to this API user.",
)
@click.option(
    "--since",
    type=Duration(),
    default="7d",
    show_default=True,
    metavar="DURATION",
    help="How far back (7d, 12h).",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="At most this many."
)
@format_option("text", "json")
def history(users_dir: Path, api_user: str | None, since: float, limit: int, fmt: str) -> int:
    """Show the service's operation log, newest first: every write, by whom, from where.

    Writes by the reconciler name its actor, commit and run; any other write (the console, a
    script) shows as "via the API" with the API user that made it. The service keeps 90 days.

    \b
    Example:
      reconciler history --api-user billing@example.com --since 30d
    """
    with open_run(users_dir, SilentReporter()) as run:
        start, operations = read_history(run, since=since, api_user=api_user, limit=limit)
    if fmt == "json":
        emit_json(history_to_json(start, operations))
    elif not operations:
        click.echo(f"No writes since {start.isoformat().replace('+00:00', 'Z')}.")
    else:
        shown = [op for op in operations if not _bookkeeping(op)]
        for line in aligned(("WHEN", "ACTION", "API USER", "BY", "FIELDS"), [_row(op) for op in shown]):
            click.echo(printable(line))
    return ExitCode.OK


def _bookkeeping(op: Operation) -> bool:
    """The reconciler's own record-keeping write (the fingerprint annotations it sets after a create
    or key change): not a change anyone made to the user. `--format json` keeps every entry."""
    return op.source == "reconciler" and op.action == "update" and set(op.fields) <= {"annotations"}


def _row(op: Operation) -> tuple[str, str, str, str, str]:
    at = op.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = [f for f in op.fields if not (op.source == "reconciler" and f == "annotations")]
    return at, op.action, op.api_user or "-", _who(op), ", ".join(fields) or "-"


def _who(op: Operation) -> str:
    """Worded as the plan words drift (plan.Drift): the service itself, an API user via the API, or
    an API user via the reconciler with its actor, commit and run."""
    if op.actor_api_user is None:
        return SERVICE_ITSELF
    if op.source != "reconciler":
        return f"{op.actor_api_user} via the API"
    parts = [op.actor, f"commit {op.commit[:12]}" if op.commit else None, f"run {op.run}" if op.run else None]
    details = ", ".join(p for p in parts if p)
    return f"{op.actor_api_user} via the reconciler" + (f" ({details})" if details else "")


COMMANDS = (history,)
