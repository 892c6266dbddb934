"""What every command shares: options, error reporting, colour. The CLI is the only layer that
prints or prompts; domain modules return values or raise `ReconcilerError`s."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from reconciler.cli.options import no_color
from reconciler.config import find_project_root
from reconciler.errors import Problem, ReconcilerError, Terminated, ValidationFailed, exit_code_for
from reconciler.output import error_to_json
from reconciler.safetext import annotation_data, annotation_property, json_text, terminal

P = ParamSpec("P")
FC = TypeVar("FC", bound=Callable[..., Any])
DEBUG_ENV = "RECONCILER_DEBUG"
MAX_DETAIL = 300
_WORD = re.compile(r"[A-Za-z0-9]{8,128}")


def _users_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    if value is not None:
        return value.expanduser()
    root = find_project_root(Path.cwd())
    return Path("users") if root is None else _relative(root / "users")


def _relative(path: Path) -> Path:
    """users/ as a path from here when it is below the working directory (messages stay short)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


users_option = click.option(
    "--users",
    "users_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    callback=_users_dir,
    show_default="users/ of the nearest directory upwards with reconciler.yaml or users/",
    help="Directory of users/<api_user>.yaml files.",
)


def use_color(ctx: click.Context | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or --no-color was given."""
    if os.environ.get("NO_COLOR"):
        return False
    if no_color(ctx or click.get_current_context()):
        return False
    return sys.stdout.isatty()


def out(text: str) -> None:
    """Text on stdout that carries values from the service or users/ (names, lease holders,
    gateway reports, the operation log): shown escaped like `err`, whoever wrote them."""
    click.echo(terminal(text, keep="\n\t"))


def err(message: str) -> None:
    """A message on stderr. Messages carry file names and values from users/: control characters
    are shown escaped and no line can pass for a GitHub workflow command (`::warning ...`)."""
    click.echo(terminal(message, keep="\n\t"), err=True)


@dataclass
class RunState:
    """What the error boundary (`reconciler.cli.main`) needs to know about the running command:
    click's context is gone by the time an exception reaches it. Passed as the root `obj`."""

    output_format: str = "text"


def remember_format(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """`--format` callback: an error is reported in the format the command was asked for."""
    run = ctx.find_object(RunState)
    if run is not None:
        run.output_format = value
    return value


def format_option(*choices: str, default: str | None = None) -> Callable[[FC], FC]:
    """`--format` with these choices (default: the first); the value reaches the command as `fmt`,
    and the error boundary reports a failure in that format (JSON: docs/cli-json.md)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default or choices[0],
        show_default=True,
        callback=remember_format,
        help="Output format (JSON: docs/cli-json.md).",
    )


def report_error(exc: BaseException, fmt: str = "text") -> int:
    """Say what went wrong, once, in the command's output format; return the exit code. Only the
    boundary calls this, and `exit_code_for` is the only mapping from an exception to a code."""
    code = exit_code_for(exc)
    if isinstance(exc, ValidationFailed):
        report_problems(exc.problems, fmt)
    elif isinstance(exc, ReconcilerError):
        _error_line(str(exc), fmt)
    elif isinstance(exc, click.ClickException) and fmt == "json":
        _error_line(exc.format_message(), fmt)  # a pipeline asked for JSON: a usage error is JSON too
    elif isinstance(exc, click.ClickException):
        exc.show()  # usage and the problem, as click words it; the code stays ours (1, not 2)
    elif isinstance(exc, KeyboardInterrupt):
        err("Interrupted.")
    elif isinstance(exc, Terminated):
        err("Terminated.")
    elif isinstance(exc, BrokenPipeError):
        _silence_stdout()
    elif not isinstance(exc, SystemExit):
        _internal_error(exc, fmt)
    return code


def _error_line(message: str, fmt: str) -> None:
    if fmt == "json":
        emit_json(error_to_json(message))
    else:
        err(f"error: {message}")


def _internal_error(exc: BaseException, fmt: str) -> None:
    """A bug: one line, not a 2,000-line traceback, unless RECONCILER_DEBUG asks for it."""
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    lines = str(exc).strip().splitlines()
    detail = _redact(lines[0][:MAX_DETAIL]) if lines else ""
    _error_line(f"internal error: {type(exc).__name__}" + (f": {detail}" if detail else ""), fmt)
    err(f"This is a bug in reconciler; run again with {DEBUG_ENV}=1 to see the traceback.")


def _redact(text: str) -> str:
    # A library's message could quote anything; a word that looks like a generated key never
    # reaches the terminal or a CI log.
    from reconciler.model import looks_like_key

    return _WORD.sub(lambda m: "**********" if looks_like_key(m.group()) else m.group(), text)


def _silence_stdout() -> None:
    # The reader went away (`reconciler live | head`): say nothing, and point stdout at /dev/null
    # so the interpreter's final flush does not complain either.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


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


def complete_api_users(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --target and --api-user: the api_users declared in users/ (or --users)."""
    users_dir = ctx.params.get("users_dir") or Path("users")
    try:
        names = sorted(p.name.removesuffix(".yaml") for p in Path(users_dir).glob("*.yaml"))
    except OSError:
        return []
    return [name for name in names if name.lower().startswith(incomplete.lower())]
