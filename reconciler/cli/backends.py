"""`reconciler backends`: which backends this installation has and what each can do."""

from __future__ import annotations

from typing import Any

import click

from reconciler.cli.common import emit_json, format_option
from reconciler.errors import ExitCode
from reconciler.output import OUTPUT_FORMAT_VERSION
from reconciler.safetext import terminal
from reconciler.workflows.backends import BackendInfo, backends


@click.command("backends")
@format_option("text", "json")
def backends_(fmt: str) -> int:
    """List the installed backends and the capabilities each declares.

    Choose one with RECONCILER_BACKEND (or `backend:` in reconciler.yaml). A backend that cannot
    be loaded is listed as unavailable, with the reason. Exit 0.

    \b
    Example:
      reconciler backends
      reconciler backends --format json | jq '.backends[] | select(.capabilities.leases)'
    """
    found = backends()
    if fmt == "json":
        emit_json({"format_version": OUTPUT_FORMAT_VERSION, "backends": [_json(b) for b in found]})
    else:
        click.echo("\n".join(line for b in found for line in _lines(b)))
    return ExitCode.OK


def _json(info: BackendInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "built_in": info.built_in,
        "available": info.unavailable is None,
        "summary": info.summary,
        "capabilities": info.capabilities,
        "unavailable": info.unavailable,
    }


def _lines(info: BackendInfo) -> list[str]:
    origin = "built in" if info.built_in else "installed"
    if info.capabilities is None:
        return [f"{info.name} ({origin}): UNAVAILABLE: {terminal(info.unavailable or '')}"]
    caps = info.capabilities
    flags = [name for name, value in caps.items() if value is True]
    fixed = ", ".join(f"{k}={v}" for k, v in caps["fixed"].items())
    return [
        f"{info.name} ({origin}): {terminal(info.summary or '')}",
        f"  fields: {', '.join(caps['fields'])}",
        f"  key update: {caps['key_update']}; has: {', '.join(flags) or 'none of the optional parts'}",
        *([f"  fixed: {fixed}"] if fixed else []),
    ]


COMMANDS = (backends_,)
