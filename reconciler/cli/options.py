"""Global options (`--no-color`, `-q`, `-v`) that work before or after the verb, and what they set:
the log level (reconciler.logs) and how much the CLI says on stderr besides errors.

`reconciler -v plan` and `reconciler plan -v` mean the same: the group has the options, and every
verb gets hidden copies of them when it is loaded. Both record into the root context's `meta`, so
the values add up (`reconciler -v plan -v` is -vv) and any command can read them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler import logs
from reconciler.errors import ConfigError
from reconciler.safetext import terminal

F = TypeVar("F", bound=Callable[..., Any])

_META = "reconciler.global"
_INJECTED = "_reconciler_globals"


def _state(ctx: click.Context) -> dict[str, Any]:
    meta: dict[str, Any] = ctx.find_root().meta.setdefault(
        _META, {"no_color": False, "quiet": False, "verbose": 0}
    )
    return meta


def _record(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    state = _state(ctx)
    if param.name == "verbose":
        state["verbose"] += int(value or 0)
    elif value:
        state[str(param.name)] = True
    try:
        logs.configure(logs.level_for(state["verbose"], state["quiet"], os.environ))
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None


def _params(*, hidden: bool) -> list[click.Option]:
    common: dict[str, Any] = {"expose_value": False, "callback": _record, "hidden": hidden}
    return [
        click.Option(
            ["--no-color"], is_flag=True, help="Never colour output (NO_COLOR is honoured too).", **common
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            help="Only errors on stderr: no warnings, notes, progress or logs.",
            **common,
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            help="More logs on stderr: -v info, -vv debug (each HTTP request, each mail-server "
            "command). RECONCILER_LOG=error|warning|info|debug sets the base level.",
            **common,
        ),
    ]


def global_options(fn: F) -> F:
    """Decorate the root group with the global options (shown in `reconciler --help`)."""
    params: list[click.Parameter] = getattr(fn, "__click_params__", [])
    params.extend(reversed(_params(hidden=False)))
    fn.__click_params__ = params  # type: ignore[attr-defined]
    return fn


def inject(command: click.Command) -> click.Command:
    """Give a verb hidden copies of the global options, once, so they may follow the verb."""
    if not getattr(command, _INJECTED, False):
        names = {opt for p in command.params for opt in getattr(p, "opts", [])}
        command.params.extend(p for p in _params(hidden=True) if not set(p.opts) & names)
        setattr(command, _INJECTED, True)
    if isinstance(command, click.Group):  # `secret encrypt -v`, `service messages -q`
        for sub in command.commands.values():
            inject(sub)
    return command


def quiet(ctx: click.Context | None = None) -> bool:
    current = ctx or click.get_current_context(silent=True)
    return bool(current and _state(current)["quiet"])


def no_color(ctx: click.Context | None = None) -> bool:
    current = ctx or click.get_current_context(silent=True)
    return bool(current and _state(current)["no_color"])


def note(message: str) -> None:
    """Something for the person at the terminal (a hint, a saved file): on stderr, unless -q."""
    if not quiet():
        # Notes carry warnings that may quote the service: escaped as every other message.
        click.echo(terminal(message, keep="\n\t"), err=True)
