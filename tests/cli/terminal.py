"""Run `reconciler` on a real pseudo-terminal (the python pty module): what a person at a terminal
sees, prompts answered by typing, and TTY-only output such as progress lines and colour."""

from __future__ import annotations

import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cli.process import COMMAND, base_env


@dataclass
class Session:
    code: int
    screen: str  # everything written to the terminal (stdout and stderr share it)


def run_on_terminal(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    answers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Session:
    """Run with stdin, stdout and stderr on one pty; when `prompt` appears, type `answers[prompt]`."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        env=base_env(cwd) | env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
        start_new_session=True,
    )
    os.close(secondary)
    pending = dict(answers or {})
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
                for prompt in [p for p in pending if p.encode() in screen]:
                    os.write(primary, pending.pop(prompt).encode() + b"\n")
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return Session(code, screen.decode(errors="replace").replace("\r\n", "\n"))


def run_with_stderr_on_terminal(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """stdout to a pipe, stderr on a pty (`reconciler ... > out.json` at a terminal)."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        env=base_env(cwd) | env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    stderr = b""
    stdout, _ = proc.communicate(timeout=60)
    while select.select([primary], [], [], 0.2)[0]:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        stderr += chunk
    os.close(primary)
    return proc.returncode, stdout.decode(), stderr.decode(errors="replace")
