"""Console backends at the command line (docs/cmc.md): `verify`, and what `plan`, `apply` and
`reconcile` do when the backend cannot write (`capabilities.can_write` is false).

- `plan`: the checklist in the console's words (text, Markdown for the pull request, JSON).
- `apply`/`reconcile` at a terminal: the guided session; each change verified before the next.
- the same without a terminal (CI): the checklist is published (stdout in every format, and the
  job summary where $GITHUB_STEP_SUMMARY is set), exit 4, "waiting for a person".
- `verify`: probe, record what matches, then (reconcile's mail step) serve what was verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import format_option, users_option
from reconciler.cli.reporters import ClickReporter
from reconciler.config import load_settings
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.safetext import terminal
from reconciler.workflows import guided
from reconciler.workflows.context import Run, open_run
from reconciler.workflows.mailstep import MailStep, run_mail_step
from reconciler.workflows.verify import (
    Checklist,
    ConsoleRun,
    Task,
    Verdict,
    checklist,
    is_console,
    render_json,
    render_markdown,
    render_text,
    verify,
)
from reconciler.workflows.verify import open_run as open_console_run

WAITING = ExitCode.WAITING


def _is_console(users_dir: Path) -> bool:
    return is_console(load_settings(users_dir))  # settings only: users/ is read once, by the verb


@contextlib.contextmanager
def _console(users_dir: Path, command: str, mail_dir: Path | None = None) -> Iterator[tuple[Run, ConsoleRun]]:
    """The command's run (users/ read first) and the console workflows' view of it."""
    with open_run(users_dir, ClickReporter(), mail_dir=mail_dir, load_users_now=True) as run:
        console = open_console_run(run, command)  # its own backend: no state-store wrapper
        try:
            yield run, console
        finally:
            console.close()


def _publish(found: Checklist, fmt: str) -> None:
    render: Callable[[Checklist], str] = {"json": render_json, "markdown": render_markdown}.get(
        fmt, render_text
    )
    click.echo(render(found), nl=False)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(render_markdown(found))


def console_plan(users_dir: Path, fmt: str, targets: tuple[str, ...], out: Path | None = None) -> int | None:
    """`plan` with a console backend; None when the backend can write (the ordinary plan).
    `--out` saves the checklist as JSON (for the record: `apply` always plans afresh)."""
    if not _is_console(users_dir):
        return None
    with _console(users_dir, "plan") as (_, run):
        found = checklist(run, targets)
    _publish(found, fmt)
    if out is not None:
        try:
            out.write_text(render_json(found), encoding="utf-8")
        except OSError as exc:
            raise ReconcilerError(f"cannot save the checklist to {out}: {exc.strerror}") from None
    return ExitCode.OK if found.empty else ExitCode.CHANGES_PENDING


def console_apply(
    users_dir: Path, targets: tuple[str, ...], fmt: str, mail: MailStep | None, mail_dir: Path | None
) -> int | None:
    """`apply`/`reconcile` with a console backend; None when the backend can write."""
    if not _is_console(users_dir):
        return None
    with _console(users_dir, "reconcile" if mail else "apply", mail_dir) as (context, run):
        if not (sys.stdin.isatty() and sys.stdout.isatty()) or fmt == "json":
            found = checklist(run, targets)
            _publish(found, fmt)
            return ExitCode.OK if found.empty else WAITING
        session = guided.run_session(run, TerminalOperator(), targets)
        click.echo(
            f"\n{len(session.done)} of {session.total} change(s) done and verified; "
            f"{session.probes} probe(s), {session.failed_authentications} failed authentication(s) caused."
        )
        if not session.complete:
            click.echo("Run `reconciler apply` again to go on, or `reconciler verify` once the rest is done.")
            return WAITING
        return _mail_step(context, run, mail)


def _mail_step(context: Run, run: ConsoleRun, mail: MailStep | None) -> int:
    """Serve what was verified: users with a change still pending keep what the gateway served,
    and the relay hop is the Customers Mail Cloud relay."""
    if mail is None:
        return ExitCode.OK
    # Every user, not only the targets: a gateway serves all of users/, and only the verified part.
    pending = frozenset(t.api_user for t in checklist(run).tasks)
    settings = context.settings
    relay = {"relay_host": settings.cmc_relay_host, "relay_port": settings.cmc_relay_port}
    context.settings = settings.model_copy(update=relay)
    return run_mail_step(context, mail, not_applied=pending)


class TerminalOperator:
    """The guided session's prompt: the terminal is the only place a key is ever shown."""

    def show(self, task: Task, total: int) -> None:
        click.echo(f"\n[{task.number}/{total}] {task.kind.value} {terminal(task.api_user)}")
        for i, step in enumerate(task.steps, 1):
            click.echo(f"  {task.number}.{i} {terminal(str(step))}")
        for line in task.drift:
            click.echo(f"  console drift: {terminal(line)}")

    def ask(self, task: Task, reveal_key: Callable[[], str | None]) -> guided.Answer:
        choices = ["done", "skip", "stop", *(["key"] if task.needs_key else [])]
        while True:
            answer = click.prompt(
                "  done, skip or stop" + (" (key: show the key once)" if task.needs_key else ""),
                type=click.Choice(choices),
            )
            if answer != "key":
                return guided.Answer(answer)
            key = reveal_key()
            click.echo(
                f"  API Key: {key}" if key else "  the key was shown already (or cannot be resolved here)"
            )

    def saw(self, task: Task, verdict: Verdict) -> None:
        mark = "verified" if verdict.ok else "NOT as declared"
        click.echo(f"  {mark}: " + "; ".join(terminal(line) for line in verdict.lines))


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {"api_user": verdict.api_user, "ok": verdict.ok, "seen": list(verdict.lines)}


@click.command(name="verify")
@users_option
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATTERN",
    help="Also probe api_users matching this glob (repeatable).",
)
@click.option(
    "--mail-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Then serve what was verified on this gateway.",
)
@click.option("--no-reload", is_flag=True, help="Write mail files but do not reload Postfix/Dovecot.")
@format_option("text", "json")
def verify_command(
    users_dir: Path, targets: tuple[str, ...], mail_dir: Path | None, no_reload: bool, fmt: str
) -> int:
    """Console backends: confirm that the account matches users/, and record it.

    Probes the users with a change pending (and those named by --target), records each one that
    matches, and with --mail-dir (or RECONCILER_MAIL_DIR) serves what was verified. Exit codes:
    0 every probed user matches, 1 one does not (shown with what the probes saw).

    \b
    Example:
      reconciler verify
      reconciler verify --target 'billing@*' --mail-dir /etc/reconciler/mail
    """
    with _console(users_dir, "verify", mail_dir) as (context, run):
        verdicts = verify(run, targets)
        counts = (run.transport.probes, run.transport.failed_authentications)
        if fmt == "json":
            doc = {
                "verified": [_verdict_json(v) for v in verdicts],
                "probes": counts[0],
                "failed_authentications": counts[1],
            }
            click.echo(render_json_doc(doc), nl=False)
        else:
            for v in verdicts:
                click.echo(
                    f"{'ok  ' if v.ok else 'FAIL'} {terminal(v.api_user)}: "
                    + "; ".join(terminal(x) for x in v.lines)
                )
            click.echo(
                f"{len(verdicts)} user(s) probed; {counts[0]} probe(s), "
                f"{counts[1]} failed authentication(s) caused."
            )
        if not all(v.ok for v in verdicts):
            return ExitCode.ERROR
        use_mail = mail_dir is not None or run.context.settings.mail_dir is not None
        return _mail_step(context, run, MailStep(mail_dir, reload=not no_reload) if use_mail else None)


def render_json_doc(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


COMMANDS = [verify_command]
