"""Issue 20, items 4 and 5: a user file cannot forge GitHub workflow commands, and the PR comment is
only ever the workflow's own.

The Actions runner takes `##[...]` anywhere in a log line, and `::...` at its start, as a command
(an annotation, `add-mask`, `stop-commands`). The action prints the Markdown plan into the log of
privileged jobs, and a description such as `##[error title=PWNED]x` came through a code span as is.
Every plan format now defuses both, whatever field carries them, and the action prints every file
between `::stop-commands::<random token>` and `::<token>::` as well.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from reconciler.output import MARKDOWN_MARKER
from tests.engine.conftest import Repo
from tests.ops.test_workflows import _run_comment_script, _run_step_script
from tests.security.test_untrusted_service_values import assert_inert

OLD_STYLE = "##[error title=PWNED]forged"
NEW_STYLE = "::error title=PWNED::forged"
PAYLOAD = f"{OLD_STYLE} {NEW_STYLE}"
FIELDS = (
    "description",
    "smtp_senders",
    "timezone",
    "role",
    "operation",
    "locked",
    "access.smtp",
    "api_key.from_env",
    "api_key.from_file",
    "api_user",
)


def _write(repo: Repo, field: str, value: str) -> None:
    """app@example.com's file with `value` in `field` (for api_user, in the file name too)."""
    name = value if field == "api_user" else "app@example.com"
    text = {
        "api_user": json.dumps(name),
        "api_key": json.dumps({"from_env": repo.var("app@example.com")}),
        "role": '"normal"',
        "access": json.dumps({"http_api": True, "smtp": False}),
        "description": '"an app"',
    }
    head, _, leaf = field.partition(".")
    if field == "smtp_senders":
        text[field] = json.dumps([value, "@example.com"])
    elif leaf:
        inner = json.loads(text.get(head, "{}"))
        inner = {} if head == "api_key" else inner
        text[head] = json.dumps(inner | {leaf: value})
    elif field != "api_user":
        text[field] = json.dumps(value)
    repo.keys.setdefault("app@example.com", "k1" + "a" * 22)
    body = "".join(f"{key}: {value}\n" for key, value in text.items())
    (repo.users / f"{name}.yaml").write_text(body)


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "--format", "text"),
        ("plan", "--format", "markdown"),
        ("plan", "--format", "json"),
        ("validate", "--table"),
        ("validate", "--format", "json"),
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "payload", [PAYLOAD, f"x\n{NEW_STYLE}", f"{NEW_STYLE}\n{OLD_STYLE}"], ids=["inline", "newline", "start"]
)
def test_no_field_of_a_user_file_forges_a_workflow_command_in_any_format(
    repo: Repo, field: str, command: tuple[str, ...], payload: str
) -> None:
    _write(repo, field, payload)
    result = repo.run(*command)
    assert result.code in (0, 1, 2, 3), result.output
    assert_inert(result.stdout)
    assert_inert(result.stderr)


def test_a_description_with_workflow_commands_still_reads_as_itself_in_the_markdown_plan(repo: Repo) -> None:
    _write(repo, "description", PAYLOAD)
    shown = repo.run("plan", "--detailed-exitcode", "--format", "markdown")
    assert shown.code == 2, shown.output
    assert "title=PWNED]forged" in shown.stdout  # shown, with only its marker defused


def _action_run_step(tmp: Path, command: str, printed: str) -> str:
    """The action's run step, with a `reconciler` on PATH that prints `printed` as its output."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "reconciler"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = validate ] && exit 0\ncat <<'OUT'\n{printed}\nOUT\nexit 2\n")
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "RUNNER_TEMP": str(tmp),
        "GITHUB_OUTPUT": str(tmp / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp / "summary"),
        "COMMAND": command,
        "USERS_DIR": "users",
        "TARGETS": "",
        "EXTRA_ARGS": "",
        "KEY_SECRETS_SET": "false",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", _run_step_script()],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout


def _commands_stopped_around(log: str, printed: str) -> str:
    """The token when `printed` sits between ::stop-commands::<token> and ::<token>::."""
    match = re.search(r"^::stop-commands::([0-9a-f]{32})$", log, re.M)
    assert match, "the printed file is not wrapped in ::stop-commands::"
    token = match.group(1)
    start, end = match.end(), log.index(f"\n::{token}::")
    assert printed in log[start:end]
    return token


@pytest.mark.parametrize("command", ["plan", "apply", "reconcile"])
def test_the_action_prints_every_file_with_workflow_commands_stopped(tmp_path: Path, command: str) -> None:
    printed = f"{OLD_STYLE}\n{NEW_STYLE}\n::add-mask::secret"
    first = _commands_stopped_around(_action_run_step(tmp_path, command, printed), printed)
    second = _commands_stopped_around(_action_run_step(tmp_path, command, printed), printed)
    assert first != second, "the token is random each run, so a file cannot end the stop early"


def test_the_plan_comment_is_found_by_the_workflows_own_login_not_any_bot(tmp_path: Path) -> None:
    other_bot = {
        "id": 3,
        "user": {"login": "mallory-app[bot]", "type": "Bot"},
        "body": f"{MARKDOWN_MARKER}\nold",
    }
    ((verb, _, _),) = _run_comment_script(tmp_path, "2", [other_bot])
    assert verb == "create", "another bot's comment holding the marker was taken for the plan"
    ours = {
        "id": 4,
        "user": {"login": "github-actions[bot]", "type": "Bot"},
        "body": f"{MARKDOWN_MARKER}\nold",
    }
    ((verb, comment_id, _),) = _run_comment_script(tmp_path, "2", [other_bot, ours])
    assert (verb, comment_id) == ("update", 4)
    # A GitHub App token posts as the app: the configured login, and only it.
    app = {"id": 5, "user": {"login": "users-bot[bot]", "type": "Bot"}, "body": f"{MARKDOWN_MARKER}\nold"}
    ((verb, comment_id, _),) = _run_comment_script(tmp_path, "2", [ours, app], author="users-bot[bot]")
    assert (verb, comment_id) == ("update", 5)
