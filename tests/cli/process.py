"""Run the real `reconciler` entry point in a subprocess (for what CliRunner cannot show: the
error boundary's exit codes, pipes, terminals)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.engine.conftest import Repo, Result

COMMAND = [sys.executable, "-m", "reconciler"]


def run_process(repo: Repo, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    done = subprocess.run(
        [*COMMAND, *args],
        cwd=repo.root,
        env=base_env(repo.root) | (env if env is not None else repo.env()),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    for secret in repo.secrets():
        assert secret not in result.output, "a key leaked into the CLI output"
    return result


def base_env(cwd: Path) -> dict[str, str]:
    """PATH and the interpreter's own settings, nothing from the developer's RECONCILER_*."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return keep | {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HOME": str(cwd)}
