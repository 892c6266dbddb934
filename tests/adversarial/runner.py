"""Runs every adversarial case through `reconciler validate` in this one process, and prints one
JSON line per case: exit code, seconds, stderr, stdout, what changed on disk. The test starts it
as a subprocess so the peak memory it reports (ru_maxrss) covers every case and nothing else.

    python -m tests.adversarial.runner WORKDIR
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
NAME = "app@example.com"
ENV_USER = f"api_user: {NAME}\napi_key:\n  from_env: APP_KEY\nrole: normal\n"


def file_user(key_path: str) -> str:
    return f"api_user: {NAME}\napi_key:\n  from_file: {json.dumps(key_path)}\nrole: normal\n"


# Special files cannot live in git: each case makes its users/ at run time. Value: (builder,
# the file an error must name, relative to users/).
Builder = Callable[[Path], None]


def _fifo_yaml(users: Path) -> None:
    os.mkfifo(users / f"{NAME}.yaml")


def _socket_yaml(users: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(users / f"{NAME}.yaml"))
    sock.close()


def _symlink_yaml(target: str) -> Builder:
    return lambda users: (users / f"{NAME}.yaml").symlink_to(target)


def _dir_yaml(users: Path) -> None:
    (users / f"{NAME}.yaml").mkdir()


def _named(name: str) -> Builder:
    def build(users: Path) -> None:
        (users / name).write_text(ENV_USER)

    return build


def _key_file(make: Callable[[Path], str]) -> Builder:
    def build(users: Path) -> None:
        (users / f"{NAME}.yaml").write_text(file_user(make(users.parent)))

    return build


def _fifo_key(root: Path) -> str:
    os.mkfifo(root / "key.fifo")
    return "../key.fifo"


def _dir_key(root: Path) -> str:
    (root / "keys").mkdir()
    return str(root / "keys")


def _big_key(root: Path) -> str:
    (root / "big.key").write_bytes(b"k1" * 512 * 1024)
    return str(root / "big.key")


def _empty_key(root: Path) -> str:
    (root / "empty.key").write_bytes(b"")
    return str(root / "empty.key")


def _socket_key(root: Path) -> str:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "key.sock"))
    sock.close()
    return str(root / "key.sock")


def _symlink_to_fifo_key(root: Path) -> str:
    os.mkfifo(root / "real.fifo")
    (root / "innocent.key").symlink_to(root / "real.fifo")
    return str(root / "innocent.key")


SPECIAL: dict[str, tuple[Builder, str]] = {
    "special-fifo-as-yaml": (_fifo_yaml, f"{NAME}.yaml"),
    "special-socket-as-yaml": (_socket_yaml, f"{NAME}.yaml"),
    "special-directory-as-yaml": (_dir_yaml, f"{NAME}.yaml"),
    "special-symlink-to-dev-zero": (_symlink_yaml("/dev/zero"), f"{NAME}.yaml"),
    "special-symlink-to-dev-stdin": (_symlink_yaml("/dev/stdin"), f"{NAME}.yaml"),
    "special-symlink-to-etc-passwd": (_symlink_yaml("/etc/passwd"), f"{NAME}.yaml"),
    "special-name-with-newline-command": (_named("x\n::error file=a::b@example.com.yaml"), "x"),
    "special-name-with-escape": (_named("\x1b[31mred@example.com.yaml"), "\\x1b[31mred@example.com.yaml"),
    "key-fifo": (_key_file(_fifo_key), f"{NAME}.yaml"),
    "key-symlink-to-fifo": (_key_file(_symlink_to_fifo_key), f"{NAME}.yaml"),
    "key-dev-zero": (_key_file(lambda _root: "/dev/zero"), f"{NAME}.yaml"),
    "key-dev-urandom": (_key_file(lambda _root: "/dev/urandom"), f"{NAME}.yaml"),
    "key-dev-null": (_key_file(lambda _root: "/dev/null"), f"{NAME}.yaml"),
    "key-dev-stdin": (_key_file(lambda _root: "/dev/stdin"), f"{NAME}.yaml"),
    "key-dev-tty": (_key_file(lambda _root: "/dev/tty"), f"{NAME}.yaml"),
    "key-proc-kmsg": (_key_file(lambda _root: "/proc/kmsg"), f"{NAME}.yaml"),
    "key-proc-self-environ": (_key_file(lambda _root: "/proc/self/environ"), f"{NAME}.yaml"),
    "key-directory": (_key_file(_dir_key), f"{NAME}.yaml"),
    "key-one-mebibyte": (_key_file(_big_key), f"{NAME}.yaml"),
    "key-empty-file": (_key_file(_empty_key), f"{NAME}.yaml"),
    "key-socket": (_key_file(_socket_key), f"{NAME}.yaml"),
}


def cases() -> list[str]:
    return sorted([p.name for p in CORPUS.iterdir()] + list(SPECIAL))


def snapshot(root: Path) -> set[tuple[str, int, int]]:
    """Every path under `root` with its size and mtime: what "nothing was written" compares."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            status = os.lstat(os.path.join(dirpath, name))
            seen.add((os.path.join(dirpath, name), status.st_size, status.st_mtime_ns))
    return seen


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def run_case(case: str, work: Path) -> dict[str, object]:
    root = work / case
    users = root / "users"
    if case in SPECIAL:
        users.mkdir(parents=True)
        build, expect = SPECIAL[case]
        build(users)
    else:
        shutil.copytree(CORPUS / case, users)
        expect = ""
    os.chdir(root)
    before = snapshot(work)
    started = time.monotonic()
    with _captured() as (out, err):
        try:
            code: object = main(["validate", "--users", str(users)])
        except SystemExit as exc:  # the boundary returns a code; older mains exited
            code = exc.code
    seconds = time.monotonic() - started
    written = sorted(p for p, _, _ in snapshot(work) ^ before)
    return {
        "case": case,
        "code": code,
        "seconds": seconds,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "users": str(users),
        "expect": expect,
        "written": written,
    }


def main_runner(work: Path) -> None:
    os.environ["GITHUB_ACTIONS"] = "true"  # annotations too: they are an output to inject into
    with open(os.devnull) as stdin:
        os.dup2(stdin.fileno(), 0)  # /dev/stdin as a key file must not wait for a terminal
    for case in cases():
        print(json.dumps(run_case(case, work)), flush=True)
    print(json.dumps({"peak_rss_kib": _peak_rss_kib()}), flush=True)


def _peak_rss_kib() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over fork and exec, so a child of
    a big pytest process would report its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    main_runner(Path(sys.argv[1]))
