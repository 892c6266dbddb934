"""The `import` workflow: adopt an existing account by writing users/<api_user>.yaml for every
live user (comments and key order of existing files kept; never one outside users/)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from reconciler import importer
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.plan import targeted
from reconciler.workflows.context import Run

Progress = Callable[[int], AbstractContextManager[Callable[[], None]]]


@dataclass(frozen=True)
class Adopted:
    files: list[importer.ImportedFile]
    results: list[str]  # per file: created, updated, kept or unchanged
    refused: list[str]  # live api_users that cannot name a file


def adopt(run: Run, targets: tuple[str, ...], *, force: bool, progress: Progress) -> Adopted:
    """Write the files; `progress(total)` gives a callback called once per file written."""
    backend = run.backend
    if not backend.capabilities.can_list:
        raise ConfigError(f"the {backend.name} backend cannot list its users, so there is nothing to import")
    live = [u for u in backend.users.list() if targeted(u.api_user, targets)]
    users_dir = run.users_dir
    users_dir.mkdir(parents=True, exist_ok=True)
    valid, refused = importer.importable(live)
    files = importer.import_users(valid, _existing_files(users_dir))
    results: list[str] = []
    with progress(len(files)) as advance:
        for imported in files:
            results.append(_import_one(users_dir, imported, force))
            advance()
    return Adopted(files, results, list(refused))


def _existing_files(users_dir: Path) -> dict[str, str]:
    # Symlinks are refused by `validate`; never follow one to write somewhere else.
    paths = [p for p in users_dir.glob("*" + importer.SUFFIX) if p.is_file() and not p.is_symlink()]
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def _import_one(users_dir: Path, imported: importer.ImportedFile, force: bool) -> str:
    if not imported.changed:
        return "unchanged"
    if imported.existing and not force:
        return "kept"
    _write_atomically(_target(users_dir, imported.file_name), imported.text)
    return "updated" if imported.existing else "created"


def _target(users_dir: Path, file_name: str) -> Path:
    """`users_dir / file_name`, refused unless it is a file directly inside users_dir."""
    path = users_dir / file_name
    if path.resolve().parent != users_dir.resolve() or path.name != file_name:
        raise ReconcilerError(f"refusing to write {file_name!r}: it is outside {users_dir}")
    return path


def _write_atomically(path: Path, text: str) -> None:
    # A reader (an editor, a concurrent validate) sees the old file or the new one, never half.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".import-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
