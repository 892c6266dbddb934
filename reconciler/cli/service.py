"""`service run` (the embedded service, loaded from the separate reconciler_service package),
`service messages` and `live`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from reconciler.backend.http.client import ServiceClient
from reconciler.cli.common import emit_json, format_option, users_option
from reconciler.cli.table import aligned, printable
from reconciler.config import load_settings
from reconciler.errors import ConfigError, ExitCode
from reconciler.model import LiveUser
from reconciler.output import live_to_json, messages_to_json

SERVICE_EXTRA_HINT = "the embedded service is not installed: pip install 'reconciler[service]'"


class ServiceGroup(click.Group):
    """`run` lives in the reconciler_service package (an optional extra); the tool never imports it
    at module level, so `pip install reconciler` works without werkzeug and aiosmtpd."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "run"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "run":
            return super().get_command(ctx, cmd_name)
        try:
            module = importlib.import_module("reconciler_service.cli")
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith(("reconciler_service", "werkzeug", "aiosmtpd")):
                raise
            return _missing_service(exc.name or "")
        command: click.Command = module.run
        return command


def _missing_service(missing: str) -> click.Command:
    @click.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def run() -> int:
        """The embedded service (not installed)."""
        raise ConfigError(f"{SERVICE_EXTRA_HINT} (missing module {missing})")

    return run


@click.group("service", cls=ServiceGroup)
def service() -> None:
    """The embedded service: the API-users HTTP API (and SMTP relay) on loopback.

    \b
    Example:
      RECONCILER_SERVICE_ADMIN_KEY=... reconciler service run --db svc.db \\
          --admin-user admin@example.com --smtp-port 2525
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
    with ServiceClient.from_settings(load_settings(users_dir)) as client:
        found = client.relay_messages()
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
    with ServiceClient.from_settings(load_settings(users_dir)) as client:
        users = client.list_users()
    if fmt == "json":
        emit_json(live_to_json(users))
    else:
        click.echo(_table(users))
    return ExitCode.OK


def _table(users: list[LiveUser]) -> str:
    header = ("API_USER", "ROLE", "HTTP", "SMTP", "LOCKED", "KEY_UPDATED_AT")
    rows = [header] + [
        (
            u.api_user,
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
