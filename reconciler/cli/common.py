"""What every command shares: options, the error handler, colour. The CLI is the only layer that
prints or prompts; domain modules return values or raise `ReconcilerError`s."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from reconciler.cli.options import no_color
from reconciler.errors import ExitCode, Problem, ReconcilerError, ValidationFailed, exit_code_for
from reconciler.output import error_to_json
from reconciler.safetext import annotation_data, annotation_property, json_text, terminal

P = ParamSpec("P")
FC = TypeVar("FC", bound=Callable[..., Any])

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
    if no_color(ctx or click.get_current_context()):
        return False
    return sys.stdout.isatty()


def err(message: str) -> None:
    """A message on stderr. Messages carry file names and values from users/: control characters
    are shown escaped and no line can pass for a GitHub workflow command (`::warning ...`)."""
    click.echo(terminal(message, keep="\n\t"), err=True)


def handle_errors(fn: Callable[P, int]) -> Callable[P, int]:
    """Turn domain errors into a message on stderr (or JSON on stdout with `--format json`) and
    the pinned exit code."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            report_problems(exc.problems, output_format())
            return ExitCode.ERROR
        except ReconcilerError as exc:
            if output_format() == "json":
                emit_json(error_to_json(str(exc)))
            else:
                err(f"error: {exc}")
            return exit_code_for(exc)

    return wrapper


def output_format() -> str:
    """The running command's `--format` (parameter `fmt`), or text."""
    ctx = click.get_current_context(silent=True)
    value = ctx.params.get("fmt") if ctx else None
    return value if isinstance(value, str) else "text"


def report_problems(problems: Sequence[Problem], fmt: str = "text", *, severity: str = "error") -> None:
    """Every problem of a run, located: text on stderr or JSON on stdout, plus GitHub annotations
    when running in GitHub Actions so a pull request shows each error on its line."""
    if fmt == "json" and severity == "error":
        emit_json(error_to_json(_summary(problems), [problem_json(p) for p in problems]))
    else:
        for problem in problems:
            err(f"{severity}: {terminal(str(problem))}")  # one line each, whatever the file name
        if severity == "error":
            err(_summary(problems))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for problem in problems:
            click.echo(github_annotation(problem, severity), err=fmt == "json")


def _summary(problems: Sequence[Problem]) -> str:
    files = len({p.file for p in problems})
    return f"{len(problems)} error(s) in {files} file(s); nothing was changed."


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "field": problem.field,
        "message": problem.message,
    }


def github_annotation(problem: Problem, severity: str = "error") -> str:
    """`::error file=...,line=...,col=...,title=...::message`, escaped as the runner expects."""
    props = {"file": _repo_relative(problem.file), "line": problem.line, "col": problem.column}
    if problem.field:
        props["title"] = problem.field
    rendered = ",".join(f"{k}={annotation_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{severity} {rendered}::{annotation_data(problem.message)}"


def _repo_relative(file: str) -> str:
    # Annotations attach to paths relative to the checkout; ours may be absolute.
    workspace = os.environ.get("GITHUB_WORKSPACE")
    path = Path(file)
    if workspace and path.is_absolute() and path.is_relative_to(workspace):
        return str(path.relative_to(workspace))
    return file


def styler() -> Callable[[str, str], str]:
    """click.style for a colour name, or plain text when colour is off (see use_color)."""
    if not use_color():
        return lambda text, _colour: text
    return lambda text, colour: (
        click.style(text, bold=True) if colour == "bold" else click.style(text, fg=colour)
    )


def emit_json(document: Any) -> None:
    """A JSON document on stdout: the one shape every `--format json` prints."""
    click.echo(json_text(json.dumps(document, indent=2, ensure_ascii=False)))


def format_option(*choices: str, default: str | None = None) -> Callable[[FC], FC]:
    """`--format` with these choices (the first is the default); the value reaches the command as `fmt`."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default or choices[0],
        show_default=True,
        help="Output format (JSON: docs/cli-json.md).",
    )


def complete_api_users(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --target and --api-user: the api_users declared in users/ (or --users)."""
    users_dir = ctx.params.get("users_dir") or Path("users")
    try:
        names = sorted(p.name.removesuffix(".yaml") for p in Path(users_dir).glob("*.yaml"))
    except OSError:
        return []
    return [name for name in names if name.lower().startswith(incomplete.lower())]


class Duration(click.ParamType[float, Any]):
    """`30s`, `5m`, `2h`, `7d` -> seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float | int):
            return float(value)
        from reconciler.durations import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
