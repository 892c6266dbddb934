"""`make demo` (scripts/demo.sh) in a fresh clone: as an unprivileged user on a machine without the
mail packages it renders the mail files and names what it skipped in one line; as root with Postfix
and Dovecot it runs the whole chain through a throw-away gateway and stops it afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import reconciler
from reconciler_service.server import free_port

REPO = Path(reconciler.__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a python under /root
USER = "nobody"
NO_SBIN = "/usr/local/bin:/usr/bin:/bin"  # a normal user's PATH; postfix, postconf, postmap are in /usr/sbin
ABSENT_GROUP = "reconciler-demo-no-such-group"  # stands in for a machine without the dovecot group
RUNUSER = shutil.which("runuser") or "runuser"  # found before PATH loses /usr/sbin
# Building a venv takes ~30 s on an idle machine; allow for a loaded one.
pytestmark = pytest.mark.timeout(300)


def _root() -> bool:
    return os.geteuid() == 0


def _clone(parent: Path) -> Path:
    clone = parent / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=60)
    return clone


def _ports() -> dict[str, str]:
    return {
        "DEMO_PORT": str(free_port("127.0.0.1")),
        "DEMO_SMTP_PORT": str(free_port("127.0.0.1")),
        "DEMO_SUBMISSION_PORT": str(free_port("127.0.0.1")),
    }


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DEMO_"))}


@pytest.fixture(scope="session")
def user_checkout() -> Iterator[tuple[Path, Path]]:
    """A fresh clone owned by an unprivileged user, and a venv built from the lock on the system
    Python (the venv is root's and read-only for the user, as a shared install would be)."""
    if not _root() or shutil.which(RUNUSER) is None or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs root (to switch to an unprivileged user), runuser and /usr/bin/python3")
    parent = Path(tempfile.mkdtemp(prefix="reconciler-demo-test-"))
    parent.chmod(0o755)
    try:
        clone = _clone(parent)
        venv = parent / "venv"
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
        for args in (
            ["--require-hashes", "-r", str(clone / "requirements/lock.txt")],
            ["--no-deps", "--no-build-isolation", "-e", str(clone)],
            ["--no-deps", "--no-build-isolation", "-e", str(clone / "reconciler_service")],
        ):
            done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
        subprocess.run(["chown", "-R", f"{USER}:", str(clone)], check=True)
        yield clone, venv
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _demo_as_user(clone: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **_clean_env(),
        **_ports(),
        "HOME": str(clone),
        "PATH": NO_SBIN,
        "DEMO_VENV": str(venv),
        "RECONCILER_MAIL_FILE_GROUP": ABSENT_GROUP,
    }
    return subprocess.run(
        [RUNUSER, "-u", USER, "--", "scripts/demo.sh"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_runs_as_an_unprivileged_user_without_the_mail_packages(
    user_checkout: tuple[Path, Path],
) -> None:
    clone, venv = user_checkout
    for _ in range(2):  # idempotent: a second run starts from scratch and succeeds too
        run = _demo_as_user(clone, venv)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    notices = [line for line in run.stdout.splitlines() if line.startswith("Mail checks skipped")]
    assert len(notices) == 1, run.stdout
    (notice,) = notices
    # Postfix's commands are found in /usr/sbin though PATH lacks it: what is left out is what
    # needs root, and postmap, which does not, parses the maps.
    assert "postfix check (the postfix command needs root)" in notice
    assert "postmap" not in notice
    assert f"group '{ABSENT_GROUP}' of dovecot/users.passwd (no such group)" in notice
    mail = clone / ".reconciler/demo/mail"
    assert "billing@example.com:{ARGON2ID}" in (mail / "dovecot/users.passwd").read_text()
    assert (mail / "postfix/sasl_passwd").stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in run.stderr


@pytest.mark.mail
def test_the_demo_runs_the_whole_chain_through_a_throwaway_gateway(tmp_path: Path) -> None:
    if not _root() or shutil.which("postfix") is None or shutil.which("dovecot") is None:
        pytest.skip("needs root and the postfix/dovecot-core packages (make mail-packages)")
    clone = _clone(tmp_path)
    env = {**_clean_env(), **_ports(), "DEMO_VENV": str(Path(sys.executable).parent.parent)}
    run = subprocess.run(
        ["scripts/demo.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "Reloaded: postfix" in out
    assert "Smoke checks passed: EHLO" in out and "Dovecot auth OK" in out
    assert re.search(r"billing@example\.com\s+billing@example\.com -> rcpt@example\.org", out), out
    assert "Mail checks skipped" not in out
    gateway = re.search(r"(/tmp/reconciler-demo-gateway\.\w+)/mail", out)
    assert gateway is not None, out
    assert not Path(gateway[1]).exists()  # the trap stopped the daemons and removed the gateway
    assert not _processes_mentioning(gateway[1])


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found
