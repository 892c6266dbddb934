"""`plan` follows Terraform's exit convention: 0 with or without changes, 2 only when asked."""

from __future__ import annotations

import json

import pytest

from tests.engine.conftest import Repo, repo

__all__ = ["repo"]


def test_plan_with_changes_exits_0_so_a_chain_goes_on_to_apply(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", "--out", "plan.json").code == 0
    assert repo.run("apply", "plan.json").code == 0
    assert "new@example.com" in repo.live()


def test_detailed_exitcode_gives_2_for_changes_and_0_for_none(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", "--detailed-exitcode").code == 2
    assert repo.run("apply", "--auto-approve").code == 0
    assert repo.run("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("spelling", ["-out", "-o", "--out"])
def test_terraform_spellings_of_out_save_the_plan(repo: Repo, spelling: str) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", spelling, "p.json").code == 0
    assert json.loads((repo.root / "p.json").read_text())["changes"]
