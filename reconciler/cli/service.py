"""`service messages` (what the embedded service's relay accepted, over HTTP) and `live`. The
embedded service itself is its own distribution with its own command, `reconciler-service run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import emit_json, format_option, out, users_option
from reconciler.errors import ExitCode
from reconciler.model import LiveUser
from reconciler.output import live_to_json, messages_to_json
from reconciler.safetext import terminal
from reconciler.tables import aligned, printable
from reconciler.workflows.context import SilentReporter, open_run
from reconciler.workflows.live import live_users, relay_messages


@click.group("service")
def service() -> None:
    """Talk to the embedded service (run it with `reconciler-service run`, docs/contract.md).

    \b
    Example:
      RECONCILER_SERVICE_ADMIN_KEY=... reconciler-service run --db svc.db \\
          --admin-user admin@example.com --smtp-port 2525
      reconciler service messages --format json
    """


@service.command("messages")
@users_option
@format_option("table", "json", default="table")
def messages(*, users_dir: Path, fmt: str) -> int:
    """List the messages the service's SMTP relay accepted (admin only), oldest first.

    JSON: {"format_version", "ok", "total", "messages": [{"received_at", "api_user", "mail_from",
    "rcpt_tos", ...}]} (docs/cli-json.md).

    \b
    Example:
      reconciler service messages
      reconciler service messages --format json | jq .total
    """
    with open_run(users_dir, SilentReporter()) as run:
        found = relay_messages(run)
    if fmt == "json":
        emit_json(messages_to_json(found))
    elif not found:
        click.echo("No messages: the relay has accepted none (send one through a gateway first).")
    else:
        rows = [(str(m.get("received_at", "?")), str(m.get("api_user", "?")), _envelope(m)) for m in found]
        for line in aligned(("RECEIVED", "API USER (SMTP AUTH)", "ENVELOPE"), rows):
            click.echo(printable(line))
    return ExitCode.OK


def _envelope(message: dict[str, Any]) -> str:
    return f"{message.get('mail_from', '?')} -> {', '.join(map(str, message.get('rcpt_tos', [])))}"


@click.command("live")
@users_option
@format_option("table", "json")
def live(*, users_dir: Path, fmt: str) -> int:
    """List the API users the service has now (JSON: {"api_users": [user objects], ...}).

    \b
    Example:
      reconciler live --format json | jq '.api_users[] | select(.locked) | .api_user'
    """
    with open_run(users_dir, SilentReporter()) as run:
        users = live_users(run)
    if fmt == "json":
        emit_json(live_to_json(users))
    else:
        out(_table(users))  # names from the service: shown escaped
    return ExitCode.OK


def _table(users: list[LiveUser]) -> str:
    header = ("API_USER", "ROLE", "HTTP", "SMTP", "LOCKED", "KEY_UPDATED_AT")
    rows = [header] + [
        (
            terminal(u.api_user),  # escaped before the widths are measured
            u.role,
            _yes(u.access.http_api),
            _yes(u.access.smtp),
            _yes(u.locked),
            u.key_updated_at.isoformat(timespec="seconds") if u.key_updated_at else "-",
        )
        for u in users
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([*lines, f"{len(users)} API user(s)"])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


COMMANDS = (service, live)
