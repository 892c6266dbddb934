"""The one command gateway for git: every git call of the tool runs through `git()`, which never
raises for a missing git, a directory that is not a checkout or a slow disk (None instead), so the
audit and the gateway reports keep working outside a checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

TIMEOUT = 5.0  # seconds; a hung git (a lock on a network disk) must not hang a run
COMMIT_RE = re.compile(r"[0-9a-f]{7,64}")


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
    return git(directory, "rev-parse", "--verify", "--end-of-options", "HEAD")


def is_commit_id(text: str) -> bool:
    """A git object id as a report may carry it: 7 to 64 hex digits (abbreviated, SHA-1, SHA-256)."""
    return COMMIT_RE.fullmatch(text) is not None


def commits_between(directory: Path, old: str, new: str = "HEAD") -> int | None:
    """How many commits `new` has that `old` lacks, in the users repo; None when unknown (not a
    checkout, or `old` is not in this clone's history). `old` comes from the service (a gateway's
    report): anything but a commit id is never handed to git, and a revision is never read as an
    option (`--output=...` would make git write a file)."""
    if not is_commit_id(old) or not (new == "HEAD" or is_commit_id(new)):
        return None
    out = git(directory, "rev-list", "--count", "--end-of-options", f"{old}..{new}")
    return int(out) if out is not None and out.isdigit() else None
