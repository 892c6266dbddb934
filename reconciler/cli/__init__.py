"""The `reconciler` command. Each verb lives in a small module of this package.

`main` is the one error boundary: whatever a verb raises (a domain error, a usage error, Ctrl-C,
SIGTERM, a closed pipe, a bug) ends in `common.report_error`, which prints it once and maps it to
the pinned exit code with `errors.exit_code_for`. Verbs never catch to pick an exit code.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

import click

from reconciler import __version__
from reconciler.cli.common import RunState, report_error
from reconciler.cli.options import global_options, inject
from reconciler.errors import ExitCode, Terminated

# Verb -> module. Modules are imported only when their verb runs, so `reconciler validate` on a
# pull request does not pay for the HTTP client, werkzeug, Jinja and aiosmtpd imports.
VERBS: dict[str, str] = {
    "validate": "validate",
    "schema": "validate",
    "plan": "changes",
    "apply": "changes",
    "reconcile": "changes",
    "render": "mail",
    "live": "service",
    "service": "service",
    "import": "ops",
    "status": "ops",
    "history": "history",
    "secret": "ops",
    "completion": "ops",
    "show": "show",
    "backends": "backends",
}


class LazyGroup(click.Group):
    """A group whose subcommands live in reconciler.cli.<module>.COMMANDS, loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = VERBS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"reconciler.cli.{module_name}")
        command = next((c for c in module.COMMANDS if c.name == cmd_name), None)
        return inject(command) if command is not None else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            # click turns an EPIPE into a plain exit 1; carry it to `main` instead.
            raise _PipeClosed from exc


class _PipeClosed(Exception):
    """A BrokenPipeError on its way past click."""


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="reconciler")
@global_options
def group() -> None:
    """API users of an email delivery service as code.

    Declare each API user in users/<api_user>.yaml, review the plan in a pull request, and let
    `reconciler reconcile` apply it to the service and reflect it on your Postfix/Dovecot gateway.

    Global options (--no-color, -q, -v) may come before or after the verb. Logs go to stderr;
    RECONCILER_LOG=error|warning|info|debug sets their level. Exit codes: docs/cli.md.

    \b
    Example:
      reconciler validate && reconciler plan && reconciler reconcile --auto-approve
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code. Never raises: `console_main` turns the code into
    the process status, and tests call this directly."""
    run = RunState()
    with _sigterm_raises():
        try:
            code = group.main(
                args=None if argv is None else list(argv),
                prog_name="reconciler",
                standalone_mode=False,
                obj=run,
            )
            sys.stdout.flush()  # a reader that went away shows up here, inside the boundary
        except BaseException as exc:  # the boundary: everything ends here
            return report_error(_unwrap(exc), run.output_format)
    return code if isinstance(code, int) else ExitCode.OK


def console_main() -> NoReturn:
    """The `reconciler` console script."""
    raise SystemExit(main())


def _unwrap(exc: BaseException) -> BaseException:
    """click's wrappers back to what happened: Abort is Ctrl-C or end of input at a prompt."""
    if isinstance(exc, _PipeClosed) and exc.__cause__ is not None:
        return exc.__cause__
    if isinstance(exc, click.exceptions.Abort):
        return KeyboardInterrupt()
    return exc


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM (systemd stop, a CI cancel, `kill`) raises `Terminated`, so locks are released and
    mail files rolled back by the same `finally` blocks as any other failure."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (a test calling main from a thread)
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    # Once is enough: a second TERM must not cut the cleanup of the first one short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated
