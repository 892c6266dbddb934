"""The `reconciler` command. Each verb lives in a small module of this package."""

from __future__ import annotations

import sys

import click

from reconciler import __version__
from reconciler.errors import ExitCode


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reconciler")
@click.option("--no-color", is_flag=True, help="Never colour output (NO_COLOR is honoured too).")
def group(no_color: bool) -> None:
    """API users of an email delivery service as code.

    Declare each API user in users/<api_user>.yaml, review the plan in a pull request, and let
    `reconciler reconcile` apply it to the service and reflect it on your Postfix/Dovecot gateway.

    \b
    Example:
      reconciler validate && reconciler plan && reconciler reconcile --auto-approve
    """


def _register() -> None:
    # Imported here so that `reconciler --help` stays fast and each verb stays in its own module.
    from reconciler.cli import engine, mail, ops, service, validate

    for module in (validate, engine, mail, service, ops):
        for command in module.COMMANDS:
            group.add_command(command)


def main(argv: list[str] | None = None) -> None:
    _register()
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
