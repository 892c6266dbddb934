"""The mail files on disk: read what is there, stage the new content beside it, swap atomically and
put the old content back on failure. No subprocess runs here."""

from __future__ import annotations

import grp
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from reconciler.errors import MailServerError
from reconciler.mail.render import PASSWD, STATE, RenderedFile

DIR_MODES = {"dovecot": 0o755, "postfix": 0o755, "state": 0o700}


class OnDisk(NamedTuple):
    content: bytes | None
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: int = 0


class Staged(NamedTuple):
    file: RenderedFile
    tmp: Path
    target: Path


# --- reading ----------------------------------------------------------------------------------


def read(path: Path) -> OnDisk:
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            return OnDisk(handle.read(), st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime))
    except FileNotFoundError:
        return OnDisk(None)
    except OSError as exc:
        raise unreadable(path, exc) from None


def read_bytes(path: Path) -> bytes:
    """The whole file; FileNotFoundError passes through (callers treat it as "none yet"), any
    other OSError becomes a MailServerError naming the path and the reason."""
    try:
        with path.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise unreadable(path, exc) from None


def unreadable(path: Path, exc: OSError) -> MailServerError:
    # The reason only (strerror), never the content: sasl_passwd holds keys.
    reason = exc.strerror or type(exc).__name__
    hint = (
        "; the mail files are root's: run as root (also for `plan` and `render --check`)"
        if isinstance(exc, PermissionError)
        else ""
    )
    return MailServerError(f"cannot read {path}: {reason}{hint}")


def owner(file: RenderedFile) -> tuple[int, int]:
    if file.group is None:
        return 0, 0
    try:
        return 0, grp.getgrnam(file.group).gr_gid
    except KeyError:
        raise MailServerError(
            f"group {file.group!r} for {file.path} does not exist (setting mail_file_group)"
        ) from None


def is_root() -> bool:
    return os.geteuid() == 0


def differs(file: RenderedFile, disk: OnDisk) -> bool:
    if disk.content != file.content.encode():
        return True
    if disk.mode != file.mode:
        return True
    # Only root can give files away, so a non-root run compares content and mode only.
    return is_root() and (disk.uid, disk.gid) != owner(file)


def changed_files(files: Iterable[RenderedFile], mail_dir: Path) -> tuple[str, ...]:
    return tuple(f.path for f in files if differs(f, read(mail_dir / f.path)))


# --- writing ----------------------------------------------------------------------------------


def ensure_dirs(mail_dir: Path) -> None:
    for name, mode in DIR_MODES.items():
        path = mail_dir / name
        try:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
        except OSError as exc:
            raise unwritable(path, exc) from None


def unwritable(path: Path, exc: OSError) -> MailServerError:
    # mkdir on a regular file says "File exists", which reads as if all were well.
    reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror or type(exc).__name__
    return MailServerError(f"cannot write {exc.filename or path}: {reason}")


def stage_bytes(
    target: Path, data: bytes, *, mode: int, uid: int, gid: int, mtime: int | None = None
) -> Path:
    """Temp file in the target's directory (so rename is atomic), fsynced, final owner and mode set
    before the content is written: a key never sits in a world-readable file, not even briefly."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        if is_root():
            os.fchown(fd, uid, gid)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    return tmp


def dovecot_mtime(old: OnDisk) -> int | None:
    # Dovecot re-reads a passwd-file only when (mtime in whole seconds, size) changed; an equal-size
    # rewrite within the same second (a key change with an equal-length hash) would go unnoticed.
    if old.content is None:
        return None
    return max(int(time.time()), old.mtime + 1)


def write_atomic(path: Path, data: bytes, *, mode: int, uid: int, gid: int, mtime: int | None = None) -> None:
    try:
        tmp = stage_bytes(path, data, mode=mode, uid=uid, gid=gid, mtime=mtime)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise unwritable(path, exc) from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(files: Sequence[RenderedFile], mail_dir: Path, disk: dict[str, OnDisk]) -> list[Staged]:
    staged: list[Staged] = []
    try:
        for file in files:
            target = mail_dir / file.path
            mtime = dovecot_mtime(disk[file.path]) if file.path == PASSWD else None
            uid, gid = owner(file)
            data = file.content.encode()
            tmp = stage_bytes(target, data, mode=file.mode, uid=uid, gid=gid, mtime=mtime)
            staged.append(Staged(file, tmp, target))
    except OSError as exc:
        discard(staged)
        raise unwritable(mail_dir, exc) from None
    except BaseException:
        discard(staged)
        raise
    return staged


def discard(staged: Iterable[Staged]) -> None:
    for item in staged:
        item.tmp.unlink(missing_ok=True)


def swap(staged: Sequence[Staged]) -> None:
    # The state file goes last: if we stop half-way, a stale state only causes a re-hash next time,
    # whereas a new state beside an old passwd-file would keep an outdated hash forever.
    for item in sorted(staged, key=lambda s: s.file.path == STATE):
        os.replace(item.tmp, item.target)
    for parent in {item.target.parent for item in staged}:
        fsync_dir(parent)


def restore(mail_dir: Path, disk: dict[str, OnDisk], paths: Iterable[str]) -> None:
    for path in paths:
        old, target = disk[path], mail_dir / path
        if old.content is None:
            target.unlink(missing_ok=True)
            continue
        mtime = dovecot_mtime(read(target)) if path == PASSWD else None
        write_atomic(target, old.content, mode=old.mode, uid=old.uid, gid=old.gid, mtime=mtime)
