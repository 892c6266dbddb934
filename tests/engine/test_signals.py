"""Ctrl-C and SIGTERM reach a real `reconciler` process: it exits 130 or 143, says so in one line,
and the `finally` blocks run on the way out (the service lease is released, nothing is half-done)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.errors import ExitCode
from tests.engine.conftest import Repo

RECONCILER = str(Path(sys.executable).with_name("reconciler"))


def _lease(repo: Repo) -> object:
    """The run's lease on the service, read from the store (an HTTP read would wait out the latency)."""
    return repo.service.embedded.store.get_lease("reconcile")


def _wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [
        (signal.SIGINT, ExitCode.INTERRUPTED, "Interrupted."),
        (signal.SIGTERM, ExitCode.TERMINATED, "Terminated."),
    ],
)
def test_a_signal_during_a_slow_apply_exits_with_its_code_and_releases_the_lock(
    repo: Repo, signum: signal.Signals, code: ExitCode, said: str
) -> None:
    repo.write("a@example.com")
    repo.service.faults.latency_ms = 1500  # every request is slow: the run waits inside its lease
    with subprocess.Popen(
        [RECONCILER, "apply", "--auto-approve"],
        cwd=repo.root,
        env=os.environ | repo.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _wait_for(lambda: _lease(repo) is not None)
        time.sleep(0.3)  # into the first request
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == said
    assert "Traceback" not in stderr + stdout
    assert _lease(repo) is None  # released on the way out
    repo.service.faults.latency_ms = 0
    assert "a@example.com" not in repo.live()


def test_ctrl_c_at_the_confirmation_prompt_exits_130_and_changes_nothing(repo: Repo) -> None:
    repo.write("a@example.com")
    primary, secondary = pty.openpty()  # a terminal on stdin, so apply asks
    with subprocess.Popen(
        [RECONCILER, "apply"],
        cwd=repo.root,
        env=os.environ | repo.env(),
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        os.close(secondary)
        assert proc.stdout is not None
        seen = b""
        # input() writes the last ": " itself, just before it blocks reading the terminal; a
        # person's Ctrl-C comes later than that, and so does ours.
        while b"Enter a value: " not in seen:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, f"no prompt; got {seen!r}"
            seen += os.read(proc.stdout.fileno(), 65536)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    os.close(primary)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert b"Interrupted." in stderr
    assert b"Traceback" not in stderr
    assert _lease(repo) is None  # released on the way out
    assert "a@example.com" not in repo.live()
