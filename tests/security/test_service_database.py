"""The embedded service's database holds key hashes and the operation log: it is created owner-only
(0600), with its WAL and shared-memory files, and one an older version made 0644 is tightened. A
regression test of issue 20, where it was created 0644. Real SQLite, real service."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler_service.store import Store
from tests.fixtures.service import RunningService
from tests.service.conftest import create, raw


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_and_shm_files_are_0600(service: RunningService) -> None:
    create(service, "a@example.com")  # a write: the WAL and shared-memory files exist now
    assert raw(service, "GET", "/api_users").status_code == 200
    files = [
        service.db_path,
        *(service.db_path.with_name(service.db_path.name + s) for s in ("-wal", "-shm")),
    ]
    assert all(f.exists() for f in files)
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_the_mode_does_not_depend_on_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store(tmp_path / "s.sqlite")
        store.close()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "s.sqlite") == 0o600


def test_a_database_made_world_readable_is_tightened_on_start(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    Store(db).close()
    db.chmod(0o644)
    Store(db).close()
    assert _mode(db) == 0o600
