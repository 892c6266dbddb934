"""The `reconciler` command. Each verb lives in a small module of this package."""

from __future__ import annotations

import importlib
import sys

import click

from reconciler import __version__
from reconciler.cli.options import exit_quietly_on_closed_stdout, global_options, inject
from reconciler.errors import ExitCode

# Verb -> module. Modules are imported only when their verb runs, so `reconciler validate` on a
# pull request does not pay for the HTTP client, werkzeug, Jinja and aiosmtpd imports.
VERBS: dict[str, str] = {
    "validate": "validate",
    "schema": "validate",
    "plan": "engine",
    "apply": "engine",
    "reconcile": "engine",
    "render": "mail",
    "live": "service",
    "service": "service",
    "import": "ops",
    "status": "ops",
    "history": "history",
    "secret": "ops",
    "completion": "ops",
    "show": "show",
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

    def invoke(self, ctx: click.Context) -> object:
        return exit_quietly_on_closed_stdout(lambda: super(LazyGroup, self).invoke(ctx))


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


def main(argv: list[str] | None = None) -> None:
    try:
        code = group.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        # Usage errors exit 1, not click's 2: 2 is pinned to "changes pending".
        exc.show()
        sys.exit(ExitCode.ERROR)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
