"""Issue 21's newcomer, replayed: a fresh clone, a user who is not root with a plain PATH, the README
from the top (`make demo`), then what the demo's last lines say (`make shell`, which starts the
demo's service again) and, in that shell, every documented example: README.md, docs/ and every
`--help` (tests/docs/examples.py lists the few that cannot run on a fresh machine, with reasons).

The clone gets a venv of its own on the system Python that reuses this venv's installed packages
(a .pth line) and installs only the clone itself: no network, and seconds instead of a minute.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler_service.server import free_port
from tests.docs.examples import ROOT, Example, all_examples, not_run
from tests.docs.examples import prepared as example_command

NEWCOMER = "reconciler-newcomer"
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a Python under /root
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # a normal user's: no sbin directories
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
pytestmark = pytest.mark.timeout(600)


def _same_python() -> bool:
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() == str(sys.version_info[:2])


def _ensure_user() -> None:
    if subprocess.run(["id", "-u", NEWCOMER], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                NEWCOMER,
            ],
            check=True,
        )


def _venv(clone: Path) -> None:
    """clone/.venv as `make setup` would leave it, from this venv's packages plus the clone itself."""
    venv = clone / ".venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "reuse-the-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    projects = [
        clone,
        *([clone / "reconciler_service"] if (clone / "reconciler_service/pyproject.toml").exists() else []),
    ]
    for project in projects:
        done = subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
             "--no-build-isolation", "-e", str(project)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    (venv / ".installed-stamp").touch()  # newer than pyproject.toml and the lock: `make setup` is done


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    if os.geteuid() != 0 or not Path(RUNUSER).exists() or not _same_python():
        pytest.skip(
            f"needs root (to act as {NEWCOMER}), runuser and {SYSTEM_PYTHON} of this Python's version"
        )
    _ensure_user()
    parent = Path(tempfile.mkdtemp(prefix="reconciler-newcomer-"))
    parent.chmod(0o755)
    try:
        clone = parent / "reconciler"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
        _venv(clone)
        subprocess.run(["chown", "-R", f"{NEWCOMER}:", str(clone)], check=True)
        yield clone
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _as_newcomer(clone: Path, command: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": PLAIN_PATH,
        "HOME": f"/home/{NEWCOMER}",
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        # Ports are shared by every test on the machine; the demo takes them from these.
        "DEMO_PORT": str(free_port("127.0.0.1")),
        "DEMO_SMTP_PORT": str(free_port("127.0.0.1")),
        "DEMO_SUBMISSION_PORT": str(free_port("127.0.0.1")),
        "FREE_PORT": str(free_port("127.0.0.1")),
        "FREE_SMTP_PORT": str(free_port("127.0.0.1")),
        "GIT_AUTHOR_NAME": "Newcomer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.com",
        "GIT_COMMITTER_NAME": "Newcomer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.com",
    }
    return subprocess.run(
        [RUNUSER, "-u", NEWCOMER, "--", *command],
        cwd=clone,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )


def _script(examples: list[Example]) -> str:
    """What the newcomer types into `make shell`: each example, its exit code marked. The README's
    run in the clone, top to bottom; every other page's and each --help's in a scratch copy of the
    project (users/, secrets/, schema/ in a new git checkout), as a reader trying that page would."""
    lines = [
        'export RECIPIENT="$(reconciler secret keygen -o newcomer.agekey)"',
        'scratch() { d=$(mktemp -d); cp -r users secrets schema "$d"; git -C "$d" init -q; echo "$d"; }',
    ]
    source = "README.md"
    for number, example in enumerate(examples):
        where = example.where.split(":")[0]
        if where != source:
            lines.append(f'cd "$CLONE" && cd "$(scratch)"  # {where}')
            source = where
        run = f"bash -c {shlex.quote(example_command(example))} < <(echo Key12345abcdef)"
        lines.append(f'{run} > "$CLONE/.example-{number}.out" 2>&1; echo "@@ {number} $?"')
    return 'CLONE="$PWD"\n' + "\n".join(lines) + "\n"


def test_a_newcomer_gets_from_a_fresh_clone_through_the_demo_to_every_example(clone: Path) -> None:
    demo = _as_newcomer(clone, ["make", "demo"])
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    ending = demo.stdout[-800:]
    assert "is stopped now" in ending and "make shell" in ending, ending

    examples = [e for e in all_examples() if not_run(e) is None]
    readme = [e for e in examples if e.where.startswith("README.md")]
    ordered = readme + [e for e in examples if e not in readme]  # the README top to bottom, first
    shell = _as_newcomer(clone, ["make", "-s", "shell"], stdin=_script(ordered))
    assert "The demo's service runs at" in shell.stderr, shell.stdout[-3000:] + shell.stderr[-3000:]
    codes = dict(re.findall(r"^@@ (\d+) (\d+)$", shell.stdout, re.M))
    failed = []
    for number, example in enumerate(ordered):
        code = codes.get(str(number))
        if code != "0":
            out = clone / f".example-{number}.out"
            output = out.read_text()[-1500:] if out.exists() else "(never ran)"
            failed.append(f"{example.where}: {example.command}\n  exit {code}\n{output}")
    assert not failed, "\n\n".join(failed)
    assert len(codes) == len(ordered) >= 40
