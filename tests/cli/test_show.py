"""`reconciler show PLAN.json`: a saved plan shown again, in each format, without the service."""

from __future__ import annotations

import json

from tests.cli.conftest import Repo


def _saved(repo: Repo) -> str:
    repo.write("new@example.com", description="billing")
    result = repo.run("plan", "--detailed-exitcode", "--out", "plan.json")
    assert result.code == 2, result.output
    return (repo.root / "plan.json").read_text()


def test_show_json_prints_the_saved_document(repo: Repo) -> None:
    saved = _saved(repo)
    result = repo.run("show", "plan.json", "--format", "json")
    assert result.code == 0
    assert json.loads(result.stdout) == json.loads(saved)


def test_show_text_matches_what_plan_printed(repo: Repo) -> None:
    _saved(repo)
    planned = repo.run("plan", "--detailed-exitcode")
    shown = repo.run("show", "plan.json")
    assert shown.code == 0
    assert shown.stdout == planned.stdout
    assert "+ create new@example.com" in shown.stdout


def test_show_markdown_has_the_pr_comment_marker(repo: Repo) -> None:
    _saved(repo)
    result = repo.run("show", "plan.json", "--format", "markdown")
    assert result.code == 0
    assert result.stdout.startswith("<!-- reconciler-plan -->")
    assert "`new@example.com`" in result.stdout


def test_show_needs_no_service(repo: Repo) -> None:
    _saved(repo)
    result = repo.run("show", "plan.json", env={"RECONCILER_API_URL": "http://127.0.0.1:9/api/v2"})
    assert result.code == 0
    assert "new@example.com" in result.stdout


def test_show_refuses_a_file_that_is_not_a_plan(repo: Repo) -> None:
    (repo.root / "other.json").write_text('{"hello": 1}')
    result = repo.run("show", "other.json")
    assert result.code == 1
    assert "other.json is not a saved plan" in result.stderr


def test_show_json_error_is_json_when_json_was_asked(repo: Repo) -> None:
    (repo.root / "other.json").write_text("not json")
    result = repo.run("show", "other.json", "--format", "json")
    assert result.code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and "not a saved plan" in document["error"]
