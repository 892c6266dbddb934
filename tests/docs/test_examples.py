"""Every shell example in `--help`, README.md and docs/ that can run on a fresh machine runs here,
against the embedded service with the demo's users, admin and keys: one that drifts from the tool
fails the build. tests/docs/examples.py lists the few that cannot run, each with its reason."""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import groupby
from pathlib import Path

import pytest

from tests.docs.examples import DOCS, ROOT, Example, help_examples, markdown_examples, not_run
from tests.docs.sandbox import DEMO_ADMIN, NO_DAEMONS, environment, failures, make_project, run_examples
from tests.fixtures.service import RunningService

HELP = {where: list(group) for where, group in groupby(help_examples(), key=lambda e: e.where)}


def _run(examples: list[Example], tmp_path: Path, service: RunningService) -> None:
    project = tmp_path / "project"
    keys = make_project(project)
    env = environment(
        os.environ,
        tmp_path,
        **keys,
        **NO_DAEMONS,
        RECONCILER_API_URL=service.base_url,
        RECONCILER_API_USER=service.admin_user,
        RECONCILER_API_KEY=service.admin_key,
        RECONCILER_RELAY_PORT=str(service.smtp_port),
    )
    ran = run_examples(examples, project, env)
    assert ran or all(not_run(e) for e in examples)
    assert not failures(ran), failures(ran)


@pytest.mark.parametrize("where", sorted(HELP))
def test_every_help_example_runs(
    where: str, tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    _run(HELP[where], tmp_path, start_service(admin_user=DEMO_ADMIN))


@pytest.mark.parametrize("doc", [d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_shell_example_of_the_docs_runs(
    doc: str, tmp_path: Path, start_service: Callable[..., RunningService]
) -> None:
    examples = markdown_examples(ROOT / doc)
    if not examples:
        pytest.skip(f"{doc} has no shell examples")
    _run(examples, tmp_path, start_service(admin_user=DEMO_ADMIN))


def test_every_command_with_a_help_has_an_example() -> None:
    from reconciler.cli import group
    from tests.docs.examples import _commands

    missing = [
        " ".join(path)
        for path, command in _commands(group, ("reconciler",))
        if path != ("reconciler",) and "Example" not in (command.help or "") and not command.hidden
    ]
    assert not missing, missing
