"""The state stores: a local JSON file (atomic, 0600, compare-and-swap under a lock) and a ref in
the users repository updated by a compare-and-swap push against a real bare repository."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.config import Settings
from reconciler.errors import StateConflict
from reconciler.run.store import GitStore, LocalStore, open_store

STATE = {"a@example.com": {"reconciler/key-fingerprint": "hmac-sha256:00ff"}}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path]:
    """Two checkouts of one users repository, as two CI runners have, and its bare origin."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    made = []
    for name in ("runner-a", "runner-b"):
        git(tmp_path, "clone", "--quiet", str(origin), name)
        made.append(tmp_path / name)
    return made[0], made[1]


def test_local_store_starts_empty_then_keeps_what_was_written_in_a_0600_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".reconciler")
    assert store.read().revision is None and not store.read().users
    revision = store.write(STATE, expected=None)
    again = store.read()
    assert (again.revision, again.users) == (revision, STATE)
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert not list(store.path.parent.glob(".state.*.tmp"))  # nothing left of the atomic write


def test_local_store_refuses_a_write_from_a_run_that_read_an_older_state(tmp_path: Path) -> None:
    first, second = LocalStore(tmp_path), LocalStore(tmp_path)
    seen = first.read().revision
    first.write(STATE, expected=seen)
    with pytest.raises(StateConflict):
        second.write({}, expected=seen)
    assert first.read().users == STATE


def test_git_store_keeps_the_state_on_a_ref_of_the_remote(clones: tuple[Path, Path]) -> None:
    a, b = clones
    writer = GitStore(a)
    assert writer.read().revision is None
    revision = writer.write(STATE, expected=None)
    seen = GitStore(b).read()  # another runner, another clone
    assert (seen.revision, seen.users) == (revision, STATE)
    assert git(a, "ls-remote", "origin", "refs/reconciler/state").split()[0] == revision
    nxt = GitStore(b).write({}, expected=revision)
    assert git(b, "rev-list", "--count", nxt, "--") == "2\n"  # the history of the state is kept


def test_two_runs_racing_to_write_the_git_state_exactly_one_wins(clones: tuple[Path, Path]) -> None:
    stores = [GitStore(clone) for clone in clones]
    seen = [store.read().revision for store in stores]
    start = threading.Barrier(2)
    won: list[str] = []
    lost: list[BaseException] = []

    def write(i: int) -> None:
        start.wait()
        try:
            won.append(stores[i].write({f"run{i}@example.com": {"n": str(i)}}, expected=seen[i]))
        except StateConflict as exc:
            lost.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (len(won), len(lost)) == (1, 1)
    assert "another run wrote it first" in str(lost[0])
    final = stores[0].read()
    assert final.revision == won[0] and len(final.users) == 1


def test_a_stale_git_writer_gets_state_conflict_even_after_the_winner_moved_on(
    clones: tuple[Path, Path],
) -> None:
    a, b = GitStore(clones[0]), GitStore(clones[1])
    base = a.write(STATE, expected=None)
    stale = b.read().revision
    a.write({}, expected=base)
    with pytest.raises(StateConflict):
        b.write(STATE, expected=stale)


def test_the_settings_choose_the_store(clones: tuple[Path, Path]) -> None:
    users = clones[0] / "users"
    users.mkdir()
    local = open_store(Settings(), users)
    assert isinstance(local, LocalStore) and local.path == clones[0] / ".reconciler" / "state.json"
    remote = open_store(Settings(state_store="git", state_ref="refs/x/state"), users)
    assert isinstance(remote, GitStore) and (remote.repo, remote.ref) == (clones[0], "refs/x/state")
