"""The confirmation at a real terminal (pty): only `yes` applies; anything else cancels with exit
1 and nothing written, as operators expect from Terraform."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Repo
from tests.cli.terminal import run_on_terminal

PROMPT = "Enter a value:"


@pytest.mark.parametrize("answer", ["y", "Y", "yes please", "no", ""])
def test_anything_but_yes_cancels_and_writes_nothing(repo: Repo, answer: str) -> None:
    repo.write("new@example.com")
    session = run_on_terminal(["apply"], cwd=repo.root, env=repo.env(), answers={PROMPT: answer})
    assert "Only 'yes' will be accepted to approve." in session.screen
    assert session.code == 1, session.screen
    assert "apply cancelled; nothing was changed" in session.screen
    assert "new@example.com" not in repo.live()
    audit = repo.root / ".reconciler" / "audit.jsonl"
    assert not audit.exists() or audit.read_text() == ""  # checked writable, but no entry


def test_yes_applies(repo: Repo) -> None:
    repo.write("new@example.com")
    session = run_on_terminal(["apply"], cwd=repo.root, env=repo.env(), answers={PROMPT: "yes"})
    assert session.code == 0, session.screen
    assert "2 of 2 changes applied." in session.screen  # the create and the admin's first key record
    assert "new@example.com" in repo.live()
    assert not any(key in session.screen for key in repo.secrets())


def test_apply_on_a_terminal_shows_progress_for_many_changes(repo: Repo) -> None:
    for i in range(20):
        repo.write(f"u{i:02}@example.com")
    session = run_on_terminal(["apply", "--auto-approve"], cwd=repo.root, env=repo.env())
    assert session.code == 0, session.screen
    assert "Applying: 21/21" in session.screen  # 20 creates and the admin's first key record
