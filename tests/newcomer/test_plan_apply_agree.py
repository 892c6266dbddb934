"""plan says, in every format, which key apply will need and cannot read here; --require-keys makes
that exit 1 (what apply jobs and on-call run), so a plan that passes is a plan whose apply can."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from reconciler import keyfiles
from reconciler.errors import SecretUnavailable
from tests.engine.conftest import Repo, repo

__all__ = ["repo"]


def _without(repo: Repo, api_user: str) -> dict[str, str]:
    return {k: v for k, v in repo.env().items() if k != repo.var(api_user)}


def test_an_unset_key_variable_is_named_in_every_format_and_plan_still_exits_0(repo: Repo) -> None:
    repo.write("newsletter@example.com")
    env = _without(repo, "newsletter@example.com")
    needs = f"apply will fail unless {repo.var('newsletter@example.com')} is set"
    text = repo.run("plan", env=env)
    assert text.code == 0, text.output
    assert f"warning: users/newsletter@example.com.yaml:3: {needs}" in text.stderr
    assert needs in text.stdout
    markdown = repo.run("plan", "--format", "markdown", env=env).stdout
    assert needs in markdown.replace("\\", "")  # Markdown escapes _ and the like
    document = json.loads(repo.run("plan", "--format", "json", env=env).stdout)
    assert needs in json.dumps(document)


def test_require_keys_turns_the_warning_into_exit_1_and_apply_agrees(repo: Repo) -> None:
    repo.write("newsletter@example.com")
    env = _without(repo, "newsletter@example.com")
    required = repo.run("plan", "--require-keys", env=env)
    assert required.code == 1
    assert repo.var("newsletter@example.com") in required.stderr
    assert repo.run("apply", "--auto-approve", env=env).code == 1
    assert repo.run("plan", "--require-keys").code == 0  # with the key: nothing to warn about


def test_a_missing_key_file_warns_like_an_unset_variable(repo: Repo) -> None:
    repo.write("billing@example.com", api_key={"from_file": "/nonexistent/billing.key"})
    result = repo.run("plan")
    assert result.code == 0, result.output
    assert (
        "apply will fail unless the key file /nonexistent/billing.key is there and readable" in result.stderr
    )
    assert repo.run("plan", "--require-keys").code == 1


def test_an_unreadable_key_file_is_unavailable_like_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "k"
    key.write_text("k1abcdefgh\n")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(key))

    # Tests run as root, which reads anything: the refusal is simulated.
    monkeypatch.setattr("reconciler.keyfiles.os.open", refuse)
    with pytest.raises(SecretUnavailable, match="permission denied"):
        keyfiles.read_key_file(key)
