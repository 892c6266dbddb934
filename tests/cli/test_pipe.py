"""A reader that goes away (`reconciler live | head -1`) ends the command quietly with 141, the
status a shell shows for git or ls in the same pipe; never a traceback or exit 1."""

from __future__ import annotations

import subprocess

import pytest

from reconciler.secrets import ApiKey
from tests.cli.conftest import Repo
from tests.cli.process import COMMAND, base_env


def _with_stdout_closed(repo: Repo, *args: str) -> tuple[int, str]:
    proc = subprocess.Popen(
        [*COMMAND, *args],
        cwd=repo.root,
        env=base_env(repo.root) | repo.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read()
    return proc.wait(timeout=60), stderr


@pytest.mark.parametrize("args", [("live",), ("live", "--format", "json"), ("import",), ("validate",)])
def test_a_closed_stdout_ends_quietly_with_141(repo: Repo, args: tuple[str, ...]) -> None:
    with repo.service.client() as client:
        client.create_user("adopt@example.com", {"role": "normal"}, ApiKey("k1abcdefgh"), {})
    code, stderr = _with_stdout_closed(repo, *args)
    assert (code, stderr) == (141, "")


def test_head_of_live_prints_the_first_line_and_nothing_else(repo: Repo) -> None:
    done = subprocess.run(
        ["sh", "-c", f"{' '.join(COMMAND)} live | head -1"],
        cwd=repo.root,
        env=base_env(repo.root) | repo.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout.startswith("API_USER") and len(done.stdout.splitlines()) == 1
    assert done.stderr == ""
