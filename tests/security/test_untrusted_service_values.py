"""Issue 20, item 2: nothing the service says reaches a terminal, the Actions log or git raw.

A forged gateway report once made `reconciler status` run `git rev-list --output=pwned..HEAD`
(creating a file as the operator), and lease holders, live names and report fields reached the
terminal with their escape sequences. Against a service that answers every read with hostile values
(tests/security/hostile.py), every command that shows the service's words shows them inertly.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.run.git import commits_between
from reconciler.workflows.gateways import with_behind
from tests.engine.conftest import Result, run_cli
from tests.fixtures.service import new_key
from tests.security.hostile import ESC, GIT_OPTION, Hostile, hostile_service

ADMIN = "admin@example.com"
COMMAND_LINE = re.compile(r"^\s*::", re.M)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with hostile_service() as served:
        yield served


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A users repo that is a git checkout, as on a gateway or an on-call laptop."""
    users = tmp_path / "users"
    users.mkdir()
    (users / f"{ADMIN}.yaml").write_text(
        f"api_user: {ADMIN}\napi_key: {{from_env: ADMIN_KEY}}\nrole: admin\naccess: {{http_api: true}}\n"
    )
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "users"], check=True)
    return tmp_path


def _run(checkout: Path, hostile: Hostile, *args: str) -> Result:
    env = {
        "RECONCILER_API_URL": hostile.url,
        "RECONCILER_API_USER": ADMIN,
        "RECONCILER_API_KEY": new_key(),
        "ADMIN_KEY": new_key(),
        "NO_COLOR": "1",
    }
    return run_cli(list(args), env, cwd=checkout)


def assert_inert(text: str) -> None:
    """Nothing in `text` acts on a terminal or in a GitHub Actions log."""
    for raw in ("\x1b", "\x9b", "\x07", "\u202e"):
        assert raw not in text, f"raw {raw!r} reached the output"
    assert "##[" not in text, "an old-style workflow command reached the output"
    assert not COMMAND_LINE.search(text), "a line starts a workflow command"


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--format", "json"),
        ("live",),
        ("live", "--format", "json"),
        ("history",),
        ("history", "--format", "json"),
        ("service", "messages"),
        ("-vv", "status"),  # the debug log quotes requests and answers too
        ("import",),  # file names and key variables come from live names
    ],
    ids=" ".join,
)
def test_every_value_from_the_service_is_shown_inertly(
    checkout: Path, hostile: Hostile, args: tuple[str, ...]
) -> None:
    result = _run(checkout, hostile, *args)
    assert_inert(result.stdout)
    assert_inert(result.stderr)


def test_a_forged_report_commit_never_reaches_git_as_an_option(checkout: Path, hostile: Hostile) -> None:
    result = _run(checkout, hostile, "status", "--format", "json")
    assert not [p for p in checkout.rglob("*pwned*")], "git took the report's commit for an option"
    (gateway,) = json.loads(result.stdout)["gateways"]
    # A field of the wrong shape reads as null, and the gateway counts as behind.
    assert (gateway["commit"], gateway["result"], gateway["behind"]) == (None, None, True)


def test_git_never_reads_a_revision_as_an_option(checkout: Path) -> None:
    assert commits_between(checkout / "users", GIT_OPTION) is None
    assert commits_between(checkout / "users", "HEAD", GIT_OPTION) is None
    assert not [p for p in checkout.rglob("*pwned*")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commit", "deadbee" + ESC),
        ("commit", "g" * 40),
        ("commit", "abc"),
        ("desired_digest", "e" * 63),
        ("result", "OK"),
        ("result", "ok "),
        ("smtp_users", True),
        ("reported_at", "yesterday"),
    ],
)
def test_report_fields_of_the_wrong_shape_are_not_believed(field: str, value: object) -> None:
    good = {
        "name": "gw1",
        "commit": "0123abc",
        "desired_digest": "e" * 64,
        "result": "ok",
        "smtp_users": 3,
        "rendered_at": "2026-01-01T00:00:00Z",
        "reported_at": "2026-01-01T00:00:01Z",
    }
    (shown,) = with_behind([good], "e" * 64)
    assert shown["behind"] is False and shown["commit"] == "0123abc"
    (forged,) = with_behind([good | {field: value}], "e" * 64)
    assert forged[field] is None
    if field in ("commit", "desired_digest", "result"):
        assert forged["behind"] is True


@pytest.mark.parametrize(
    ("name", "value"), [("STATE_REMOTE", "--upload-pack=touch pwned"), ("STATE_REF", GIT_OPTION)]
)
def test_the_git_state_stores_settings_cannot_be_git_options(checkout: Path, name: str, value: str) -> None:
    result = run_cli(["plan"], {f"RECONCILER_{name}": value, "RECONCILER_STATE_STORE": "git"}, cwd=checkout)
    assert result.code == 1
    assert f"RECONCILER_{name}" in result.stderr
    assert not [p for p in checkout.rglob("*pwned*")]
