"""At a terminal: colour only when allowed (never with NO_COLOR or --no-color), and apply asks
before it changes anything."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import Repo

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
ESC = b"\x1b["


def _on_a_terminal(repo: Repo, *args: str, env: dict[str, str], answer: bytes | None = None) -> bytes:
    """Run the CLI with a pseudo-terminal as stdout/stderr (and stdin when it must answer)."""
    primary, secondary = pty.openpty()
    stdin = secondary if answer is not None else subprocess.DEVNULL
    with subprocess.Popen(
        [RECONCILER, *args],
        cwd=repo.root,
        env=env,
        stdin=stdin,
        stdout=secondary,
        stderr=secondary,
    ) as proc:
        os.close(secondary)
        if answer is not None:
            os.write(primary, answer)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(30)
    os.close(primary)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("extra_env", "flags", "coloured"),
    [({}, (), True), ({"NO_COLOR": "1"}, (), False), ({}, ("--no-color",), False)],
)
def test_plan_colours_only_when_allowed(
    repo: Repo, extra_env: dict[str, str], flags: tuple[str, ...], coloured: bool
) -> None:
    repo.write("a@example.com")
    env = {k: v for k, v in (os.environ | repo.env()).items() if k != "NO_COLOR"} | extra_env
    out = _on_a_terminal(repo, *flags, "plan", env=env)
    assert b"create a@example.com" in out
    assert (ESC in out) is coloured
    assert not any(key.encode() in out for key in repo.secrets())


def test_plan_piped_is_never_coloured(repo: Repo) -> None:
    repo.write("a@example.com")
    env = {k: v for k, v in (os.environ | repo.env()).items() if k != "NO_COLOR"}
    done = subprocess.run([RECONCILER, "plan"], cwd=repo.root, env=env, capture_output=True, check=False)
    assert done.returncode == 0  # changes pending, but only --detailed-exitcode makes that 2
    assert ESC not in done.stdout


@pytest.mark.parametrize(("answer", "applied"), [(b"n\n", False), (b"yes\n", True)])
def test_apply_at_a_terminal_asks_first(repo: Repo, answer: bytes, applied: bool) -> None:
    repo.write("a@example.com")
    env = os.environ | repo.env()
    out = _on_a_terminal(repo, "apply", env=env, answer=answer)
    assert b"Only 'yes' will be accepted to approve." in out
    assert ("a@example.com" in repo.live()) is applied
    assert (b"apply cancelled; nothing was changed" in out) is not applied
