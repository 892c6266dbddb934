"""Who runs, and which run this is: recorded in the audit log, the lock, the lease and (through
the backend's RunIdentity) with every write the service logs."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from pathlib import Path

from reconciler.backend.base import RunIdentity
from reconciler.run.git import git_commit


def actor() -> str:
    """Who runs this: the CI actor when there is one, else user@host."""
    for name in ("RECONCILER_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def run_id() -> str:
    """The id of this run for the service's log: the CI run when there is one."""
    return os.environ.get("GITHUB_RUN_ID") or uuid.uuid4().hex[:12]


def run_identity(users_dir: Path) -> RunIdentity:
    """This run's identity: actor, the users repo's commit, the run id."""
    return RunIdentity(actor(), git_commit(users_dir), run_id())
