"""`reconciler show PLAN.json`: a saved plan, shown again (like `terraform show plan.out`)."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.common import format_option, styler
from reconciler.errors import ExitCode
from reconciler.output import render_json, render_markdown, render_text
from reconciler.workflows.saved import load_saved_plan


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
    saved = load_saved_plan(plan_file)
    if fmt == "json":
        click.echo(render_json(saved), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(saved), nl=False)
    else:
        click.echo(render_text(saved, styler()), nl=False)
    return ExitCode.OK


COMMANDS = (show,)
