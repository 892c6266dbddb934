"""`make demo BACKEND=cmc-console` runs its story against the stand-in to the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cmc_demo_runs_its_story_to_the_end() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/demo_cmc.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lock by someone@example.com" in done.stdout
    assert "(exit 4)" in done.stdout
