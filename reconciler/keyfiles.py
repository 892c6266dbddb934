"""Reading a key file without ever blocking, draining a device or taking the wrong file for a key.

Shared by `secrets` (which reads keys) and `desired` (whose `validate` refuses key files it can see
are not key files), so that neither imports the other.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler.errors import SecretError, SecretUnavailable
from reconciler.model import KeyRef

MAX_KEY_FILE_BYTES = 4096  # a key is at most 128 characters; anything bigger is the wrong file


def read_key_file(path: Path, limit: int = MAX_KEY_FILE_BYTES, label: str = "key file") -> bytes:
    """The bytes of a key file that is a regular file of at most `limit` bytes.

    Opened with O_NONBLOCK and checked with fstat on the opened descriptor, not on the name: a FIFO
    (or /dev/stdin) would otherwise block the run forever while it holds the lock, a device would
    be consumed (/proc/kmsg), and a name checked before opening can be swapped before it is opened.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SecretUnavailable(f"{label} {path} does not exist") from None
    except PermissionError:
        # Like a missing file: the key is not here for this user (a plan run by someone who may
        # not read /run/secrets); apply, which needs it, fails on it all the same.
        raise SecretUnavailable(f"cannot read {label} {path}: permission denied") from None
    except ValueError:
        raise SecretError(f"{label} path contains a NUL character") from None
    except OSError as exc:
        raise SecretError(f"cannot read {label} {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        status = os.fstat(fd)
        refusal = key_file_refusal(status, limit)
        if refusal is not None:
            raise SecretError(f"{label} {path} {refusal}")
        # Never more than fstat promised: a kernel file (/proc/kmsg says size 0) is not drained.
        return _read_all(fd, f"{label} {path}", status.st_size)
    finally:
        os.close(fd)


def _read_all(fd: int, name: str, size: int) -> bytes:
    """Exactly the first `size` bytes (fewer if the file shrank)."""
    chunks: list[bytes] = []
    got = 0
    try:
        while got < size and (chunk := os.read(fd, size - got)):
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise SecretError(f"cannot read {name}: {exc.strerror or type(exc).__name__}") from None
    return b"".join(chunks)


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def key_file_refusal(status: os.stat_result, limit: int = MAX_KEY_FILE_BYTES) -> str | None:
    """Why a file with this status cannot be a key file, or None when it can."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(status.st_mode)), "a special file")
        return f"is {kind}, not a regular file; point from_file at a file holding only the key"
    if status.st_size > limit:
        return f"is too large to hold one key ({status.st_size} bytes; at most {limit})"
    if status.st_size == 0:
        # Also what /proc and /sys files report: reading those could consume kernel messages.
        return "is empty (or a kernel file that reports no size, like /proc/kmsg)"
    return None


def key_file_path(ref: KeyRef, base_dir: Path) -> Path:
    """Where a `from_file` reference points; relative paths start at the declaring file's directory,
    so a users repository works from any current directory."""
    assert ref.from_file is not None
    try:
        path = Path(ref.from_file).expanduser()
    except RuntimeError:  # `~name/...` for a user this machine does not have
        home = ref.from_file.split("/")[0]
        raise SecretError(f"key file {ref.from_file}: {home} has no home here") from None
    return path if path.is_absolute() else base_dir / path
