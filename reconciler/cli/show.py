"""`reconciler show PLAN.json`: a saved plan, shown again (like `terraform show plan.out`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli.common import format_option, styler
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.output import plan_from_json, render_json, render_markdown, render_text
from reconciler.plan import Plan


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@format_option("text", "markdown", "json")
def show(plan_file: Path, fmt: str) -> int:
    """Show a plan saved with `plan --out`, without contacting the service.

    The JSON form is the saved document itself (docs/plan-json.md). Exit 0, or 1 when the file is
    not a saved plan.

    \b
    Example:
      reconciler plan --out plan.json && reconciler show plan.json --format markdown
    """
    saved = read_saved_plan(plan_file)
    if fmt == "json":
        click.echo(render_json(saved), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(saved), nl=False)
    else:
        click.echo(render_text(saved, styler()), nl=False)
    return ExitCode.OK


def read_saved_plan(path: Path) -> Plan:
    try:
        return plan_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReconcilerError(f"{path} is not a saved plan: {type(exc).__name__}: {exc}") from None


COMMANDS = (show,)
