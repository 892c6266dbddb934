"""What every command shares: options, the error handler, colour. The CLI is the only layer that
prints or prompts; domain modules return values or raise `ReconcilerError`s."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from reconciler.errors import ExitCode, ReconcilerError, ValidationFailed, exit_code_for

P = ParamSpec("P")
T = TypeVar("T")

users_option = click.option(
    "--users",
    "users_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("users"),
    show_default=True,
    help="Directory of users/<api_user>.yaml files.",
)


def use_color(ctx: click.Context | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or --no-color was given."""
    if os.environ.get("NO_COLOR"):
        return False
    root = (ctx or click.get_current_context()).find_root()
    if root.params.get("no_color"):
        return False
    return sys.stdout.isatty()


def err(message: str) -> None:
    click.echo(message, err=True)


def handle_errors(fn: Callable[P, int]) -> Callable[P, int]:
    """Turn domain errors into a message on stderr and the pinned exit code."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            for problem in exc.problems:
                err(f"error: {problem}")
            err(f"{len(exc.problems)} error(s); nothing was changed.")
            return ExitCode.ERROR
        except ReconcilerError as exc:
            err(f"error: {exc}")
            return exit_code_for(exc)

    return wrapper


def exit_with(code: int) -> Any:
    raise SystemExit(int(code))
