"""The one command gateway for git: every git call of the tool runs through `git()`, which never
raises for a missing git, a directory that is not a checkout or a slow disk (None instead), so the
audit and the gateway reports keep working outside a checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT = 5.0  # seconds; a hung git (a lock on a network disk) must not hang a run


def git(directory: Path, *args: str) -> str | None:
    """`git -C directory args...`'s stdout, stripped; None when it failed or could not run."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(directory: Path) -> str | None:
    """The users repo's commit, when it is a git checkout."""
    return git(directory, "rev-parse", "HEAD")


def commits_between(directory: Path, old: str, new: str = "HEAD") -> int | None:
    """How many commits `new` has that `old` lacks, in the users repo; None when unknown (not a
    checkout, or `old` is not in this clone's history)."""
    out = git(directory, "rev-list", "--count", f"{old}..{new}")
    return int(out) if out is not None and out.isdigit() else None
