"""Every operator command explains itself with an example; shell completion works."""

from __future__ import annotations

import pytest

from reconciler.cli import VERBS
from tests.ops.conftest import Repo


@pytest.mark.parametrize(
    "command",
    [[verb] for verb in sorted(VERBS)] + [["secret", "encrypt"], ["service", "messages"]],
)
def test_help_has_an_example(repo: Repo, command: list[str]) -> None:
    shown = repo.run(*command, "--help")
    assert shown.code == 0
    assert "Example:" in shown.stdout
    assert "reconciler " + command[0] in shown.stdout.split("Example:")[1]


def test_top_level_help_has_an_example(repo: Repo) -> None:
    assert "Example:" in repo.run("--help").stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(repo: Repo, shell: str) -> None:
    shown = repo.run("completion", shell)
    assert shown.code == 0
    assert "_RECONCILER_COMPLETE" in shown.stdout
