"""`validate` and `schema`: the commands that need no service and no secrets, so they run on any
pull request, even from a fork."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import format_option, out, users_option
from reconciler.desired import DesiredState
from reconciler.errors import ExitCode, Problem, ValidationFailed
from reconciler.model import UserSpec, user_json_schema
from reconciler.output import OUTPUT_FORMAT_VERSION
from reconciler.safetext import json_text
from reconciler.workflows.context import load_users_checked

DESCRIPTION_WIDTH = 40


@click.command()
@users_option
@format_option("text", "json", default="text")
@click.option(
    "--table/--no-table",
    default=None,
    help="Show a table of the declared users (default: on a terminal, in text mode).",
)
def validate(users_dir: Path, fmt: str, table: bool | None) -> int:
    """Check every users/<api_user>.yaml without contacting the service or reading any key.

    Exit 0 when valid, 1 when not; every error names file:line:column and the field. With
    GITHUB_ACTIONS=true each error is also printed as an annotation on its line of the pull request.

    \b
    Example:
      reconciler validate
      reconciler validate --users path/to/users --format json
    """
    if not users_dir.is_dir():
        raise ValidationFailed([Problem(str(users_dir), "the users directory does not exist")])
    desired = load_users_checked(users_dir)
    if fmt == "json":
        click.echo(json_text(json.dumps(_as_json(desired), indent=2)))  # no `##[` for the Actions log
        return ExitCode.OK
    if table if table is not None else sys.stdout.isatty():
        out(users_table(desired))  # descriptions and senders: shown escaped
    click.echo(f"{len(desired.users)} user(s) valid in {users_dir}.")
    return ExitCode.OK


@click.command()
def schema() -> int:
    """Print the JSON Schema of a user file (the example users point editors at schema/user.schema.json).

    \b
    Example:
      reconciler schema > schema/user.schema.json
    """
    click.echo(schema_text(), nl=False)
    return ExitCode.OK


def schema_text() -> str:
    return json.dumps(user_json_schema(), indent=2) + "\n"


def _as_json(desired: DesiredState) -> dict[str, Any]:
    users = [
        {"file": str(desired.files[user.api_user]), **user.model_dump(mode="json", exclude_none=True)}
        for user in desired.users
    ]
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": True,
        "count": len(users),
        "digest": desired.digest,
        "users": users,
    }


def users_table(desired: DesiredState) -> str:
    """A plain-text overview: who can do what, at a glance."""
    header = ("API USER", "ROLE", "HTTP", "SMTP", "LOCKED", "SENDERS", "DESCRIPTION")
    rows = [header, *(_row(user) for user in desired.users)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _row(user: UserSpec) -> tuple[str, ...]:
    description = user.description or ""
    if len(description) > DESCRIPTION_WIDTH:
        description = description[: DESCRIPTION_WIDTH - 3] + "..."
    senders = ", ".join(user.senders()) if user.access.smtp else "-"
    return (
        user.api_user,
        user.role or "-",
        _yes(user.access.http_api) + (" (own)" if user.access.own_data_only else ""),
        _yes(user.access.smtp),
        _yes(user.locked),
        senders,
        description,
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


COMMANDS = (validate, schema)
