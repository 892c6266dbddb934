"""Options an operator reaches for: global options after the verb, `import --target`, completion
of api_users, and a wrong base URL that says what is wrong."""

from __future__ import annotations

import json

import pytest

from reconciler.secrets import ApiKey
from tests.cli.conftest import Repo
from tests.cli.process import run_process
from tests.cli.terminal import run_on_terminal


def test_a_404_on_the_first_request_asks_whether_the_url_ends_in_api_v2(repo: Repo) -> None:
    base = repo.service.base_url.removesuffix("/api/v2")
    result = repo.run("live", env=repo.env() | {"RECONCILER_API_URL": base})
    assert result.code == 1
    assert "HTTP 404" in result.stderr
    assert "does RECONCILER_API_URL end in /api/v2" in result.stderr


def test_a_404_for_a_missing_user_has_no_url_hint(repo: Repo) -> None:
    with repo.service.client() as client:
        client.list_users()
        assert client.get_user("nobody@example.com") is None
        from reconciler.errors import NotFound

        with pytest.raises(NotFound) as info:
            client.delete_user("nobody@example.com")
    assert "/api/v2" not in str(info.value)


@pytest.mark.parametrize("where", ["before", "after"])
def test_no_color_works_before_or_after_the_verb(repo: Repo, where: str) -> None:
    repo.write("new@example.com")
    env = {k: v for k, v in repo.env().items() if k != "NO_COLOR"}
    coloured = run_on_terminal(["plan"], cwd=repo.root, env=env)
    assert "\x1b[32m" in coloured.screen  # a create is green on a terminal
    args = ["--no-color", "plan"] if where == "before" else ["plan", "--no-color"]
    plain = run_on_terminal(args, cwd=repo.root, env=env)
    assert plain.code == 0
    assert "+ create new@example.com" in plain.screen
    assert "\x1b[" not in plain.screen


def _service_users(repo: Repo, *names: str) -> None:
    with repo.service.client() as client:
        for name in names:
            client.create_user(name, {"role": "normal"}, ApiKey("k1abcdefgh"), {})


def test_import_target_imports_only_the_matching_users(repo: Repo) -> None:
    _service_users(repo, "billing@example.com", "billing2@example.com", "news@example.com")
    result = repo.run("import", "--target", "billing*", "--format", "json")
    assert result.code == 0, result.output
    imported = sorted(f["api_user"] for f in json.loads(result.stdout)["files"])
    assert imported == ["billing2@example.com", "billing@example.com"]
    assert not (repo.users / "news@example.com.yaml").exists()
    assert (repo.users / "billing@example.com.yaml").exists()


def test_import_target_is_repeatable_and_case_insensitive(repo: Repo) -> None:
    _service_users(repo, "billing@example.com", "news@example.com", "other@example.com")
    result = repo.run("import", "--target", "BILLING@*", "--target", "news@example.com")
    assert result.code == 0, result.output
    assert sorted(p.name for p in repo.users.iterdir()) == [
        "admin@example.com.yaml",
        "billing@example.com.yaml",
        "news@example.com.yaml",
    ]


@pytest.mark.parametrize(
    ("words", "cword"),
    [
        ("reconciler plan --target b", 3),
        ("reconciler import --target b", 3),
        ("reconciler apply --target b", 3),
        ("reconciler history --api-user b", 3),
    ],
)
def test_completion_offers_the_api_users_declared_in_users(repo: Repo, words: str, cword: int) -> None:
    repo.write("billing@example.com")
    repo.write("bounce@example.com")
    repo.write("news@example.com")
    env = repo.env() | {
        "_RECONCILER_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    result = run_process(repo, env=env)
    assert result.code == 0, result.output
    offered = [line.split(",", 1)[1] for line in result.stdout.splitlines()]
    assert offered == ["billing@example.com", "bounce@example.com"]


def test_completion_reads_the_users_dir_given_on_the_line(repo: Repo) -> None:
    other = repo.root / "elsewhere"
    other.mkdir()
    (other / "zed@example.com.yaml").write_text("api_user: zed@example.com\n")
    words = "reconciler plan --users elsewhere --target "
    env = repo.env() | {"_RECONCILER_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "5"}
    result = run_process(repo, env=env)
    assert [line.split(",", 1)[1] for line in result.stdout.splitlines()] == ["zed@example.com"]
