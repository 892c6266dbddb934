"""Where a run keeps what the backend cannot (reconciler/backend/base.py `StateStore`): key
fingerprints, key-source digests and key times of a backend without annotations.

- `LocalStore`: one JSON file in the state directory, written atomically with mode 0600, its
  compare-and-swap under an exclusive lock (one machine).
- `GitStore`: one commit on a ref of the users repository (default `refs/reconciler/state` on
  `origin`), so the state survives an ephemeral CI runner. A write pushes a new commit with
  `--force-with-lease=<ref>:<expected>`: the remote takes it only if the ref is still where this
  run read it, so two runs cannot both win; the loser gets `StateConflict`.

The document is `{"format_version": 1, "users": {api_user (lowercased): {name: value}}}`, sorted,
so equal states are equal bytes. It holds fingerprints (keyed hashes), never a key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from reconciler.backend.base import StateSnapshot, StateStore
from reconciler.config import Settings
from reconciler.errors import StateConflict, StateError

_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
FORMAT_VERSION = 1
FILE_NAME = "state.json"
GIT_TIMEOUT = 60.0  # seconds; a push to a slow remote, not a hung one
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "reconciler",
    "GIT_AUTHOR_EMAIL": "reconciler@localhost",
    "GIT_COMMITTER_NAME": "reconciler",
    "GIT_COMMITTER_EMAIL": "reconciler@localhost",
}


def encode(users: Mapping[str, Mapping[str, str]]) -> bytes:
    data = {
        "format_version": FORMAT_VERSION,
        "users": {name.lower(): dict(sorted(notes.items())) for name, notes in sorted(users.items())},
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def decode(raw: bytes, where: str) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(raw)
        users = data["users"]
        if data.get("format_version") != FORMAT_VERSION or not isinstance(users, dict):
            raise ValueError("unknown format")
        return {str(n): {str(k): str(v) for k, v in dict(notes).items()} for n, notes in users.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{where}: not a reconciler state document ({type(exc).__name__})") from None


class LocalStore:
    """`<state_dir>/state.json`; the revision is the sha-256 of its bytes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def read(self) -> StateSnapshot:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return StateSnapshot({}, None)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the state ({exc.strerror})") from None
        return StateSnapshot(decode(raw, str(self.path)), _digest(raw))

    def write(self, users: Mapping[str, Mapping[str, str]], *, expected: str | None) -> str:
        raw = encode(users)
        with self._locked():
            current = self.read().revision
            if current != expected:
                raise StateConflict(
                    f"{self.path} changed since this run read it (another run wrote it first); run again"
                )
            _write_atomically(self.path, raw)
        return _digest(raw)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{self.path.parent}: cannot write the state ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class GitStore:
    """A commit holding `state.json` on `ref` of `remote`, in the repository at `repo`."""

    def __init__(self, repo: Path, ref: str = "refs/reconciler/state", remote: str = "origin") -> None:
        if not ref.startswith("refs/"):
            raise StateError(f"state_ref {ref!r} must be a full ref name such as refs/reconciler/state")
        self.repo, self.ref, self.remote = repo, ref, remote

    def read(self) -> StateSnapshot:
        commit = self._remote_revision()
        if commit is None:
            return StateSnapshot({}, None)
        self._git("fetch", "--quiet", "--no-tags", self.remote, f"+{self.ref}:{self.ref}")
        raw = self._git("cat-file", "blob", f"{commit}:{FILE_NAME}").stdout.encode()
        return StateSnapshot(decode(raw, f"{self.remote} {self.ref}"), commit)

    def write(self, users: Mapping[str, Mapping[str, str]], *, expected: str | None) -> str:
        blob = self._git("hash-object", "-w", "--stdin", stdin=encode(users).decode()).stdout.strip()
        tree = self._git("mktree", stdin=f"100644 blob {blob}\t{FILE_NAME}\n").stdout.strip()
        parents = ["-p", expected] if expected else []
        commit = self._git("commit-tree", tree, *parents, "-m", "reconciler state").stdout.strip()
        # Empty after the colon: the ref must not exist yet (no state was read).
        lease = f"--force-with-lease={self.ref}:{expected or ''}"
        pushed = self._git("push", "--porcelain", lease, self.remote, f"{commit}:{self.ref}", check=False)
        if pushed.returncode != 0:
            # Refused by our lease ("stale info") or by the remote's own atomic check of the old
            # value ("cannot lock ref"): either way, the ref is not where this run read it.
            if self._remote_revision() != expected:
                raise StateConflict(
                    f"{self.remote} {self.ref} moved since this run read it (another run wrote it "
                    "first); run again"
                )
            raise _git_failed(["push", self.remote, self.ref], pushed)
        return commit

    def _remote_revision(self) -> str | None:
        listed = self._git("ls-remote", self.remote, self.ref).stdout.split()
        return listed[0] if listed else None

    def _git(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = ["git", "-C", str(self.repo), *args]
        try:
            done = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                env={**os.environ, **_GIT_IDENTITY, "GIT_TERMINAL_PROMPT": "0"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StateError(f"git {args[0]}: cannot run ({type(exc).__name__})") from None
        if check and done.returncode != 0:
            raise _git_failed(list(args[:1]), done)
        return done


def open_store(settings: Settings, users_dir: Path) -> StateStore:
    """The store `state_store` names: local (the state directory) or git (the users repository)."""
    if settings.state_store == "git":
        return GitStore(_repository_of(users_dir), settings.state_ref, settings.state_remote)
    return LocalStore(users_dir.parent / settings.state_dir)  # as the audit log and the lock


def _repository_of(users_dir: Path) -> Path:
    done = subprocess.run(
        ["git", "-C", str(users_dir), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise StateError(f"state_store: git needs {users_dir} to be in a git checkout")
    return Path(done.stdout.strip())


def _git_failed(args: list[str], done: subprocess.CompletedProcess[str]) -> StateError:
    # The remote's URL may carry a token (https://user:token@host): credentials are masked.
    detail = _CREDENTIALS.sub(r"\1***@", " ".join((done.stderr or done.stdout).split()))[:300]
    return StateError(f"git {' '.join(args)} failed (exit {done.returncode}): {detail}")


def _write_atomically(path: Path, raw: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
