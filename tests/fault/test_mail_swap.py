"""kill -9 of `reconciler render` in the middle of swapping the mail files: the next render puts
the whole old set back before anything else, removes every staged copy the crashed one left (copies
of sasl_passwd hold keys), and then installs the whole new set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.mail.files import OnDisk, ensure_dirs, recover, stage, swap
from reconciler.mail.render import RenderedFile
from tests.fault.helpers import RECONCILER

MAIL_FILES = (
    "dovecot/users.passwd",
    "postfix/sasl_passwd",
    "postfix/sender_login_maps",
    "postfix/sender_relayhost_maps",
)
# Runs `reconciler render`, killing itself with SIGKILL right after the first staged file was
# renamed into place: the worst moment, half the set new and half old.
CRASH_MID_SWAP = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    staged = os.path.basename(str(src)).startswith(".")
    if staged and ("/postfix/" in str(dst) or "/dovecot/" in str(dst)):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from reconciler.cli import main
sys.argv = ["reconciler", *sys.argv[1:]]
main()
"""


def _users(root: Path, names: list[str]) -> tuple[Path, dict[str, str]]:
    users = root / "users"
    users.mkdir(exist_ok=True)
    for old in users.iterdir():
        old.unlink()
    env = {}
    for name in names:
        var = "K_" + name.split("@")[0].upper()
        (users / f"{name}.yaml").write_text(
            f"api_user: {name}\napi_key: {{from_env: {var}}}\nrole: normal\naccess: {{smtp: true}}\n"
        )
        env[var] = f"Key{len(names)}x{name.split('@')[0]}12345"
    return users, env


def _render(
    users: Path, mail_dir: Path, env: dict[str, str], *, crash: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", CRASH_MID_SWAP] if crash else [RECONCILER]
    full_env = {
        **os.environ,
        **env,
        "RECONCILER_MAIL_FILE_GROUP": "root",
        "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
    }
    return subprocess.run(
        [*command, "render", "--users", str(users), "--mail-dir", str(mail_dir), "--no-reload"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _set(mail_dir: Path) -> dict[str, str]:
    return {name: (mail_dir / name).read_text() for name in MAIL_FILES if (mail_dir / name).exists()}


def _leftovers(mail_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(mail_dir)) for p in mail_dir.rglob(".*") if p.is_file())


@pytest.mark.skipif(os.geteuid() != 0, reason="the mail files are root's")
def test_kill_9_mid_swap_then_the_next_render_restores_the_old_set_and_installs_the_new_whole(
    tmp_path: Path,
) -> None:
    mail_dir = tmp_path / "mail"
    users, env = _users(tmp_path, ["a@example.com", "b@example.com"])
    first = _render(users, mail_dir, env)
    assert first.returncode == 0, first.stderr
    old = _set(mail_dir)
    users, env = _users(tmp_path, ["a@example.com", "c@example.com", "d@example.com"])
    crashed = _render(users, mail_dir, env, crash=True)
    assert crashed.returncode == -9, crashed.stderr
    torn = _set(mail_dir)
    assert torn != old and any(torn[n] == old[n] for n in old)  # killed half-way through the swap
    assert _leftovers(mail_dir)  # staged copies and old copies are still lying there
    copy = tmp_path / "copy"
    shutil.copytree(mail_dir, copy, symlinks=True)
    recover(copy, MAIL_FILES)  # what the next install does first, before it reads the files
    assert _set(copy) == old and _leftovers(copy) == []  # the whole old set, and nothing else
    again = _render(users, mail_dir, env)
    assert again.returncode == 0, again.stderr
    assert _leftovers(mail_dir) == []
    new = _set(mail_dir)
    assert all("b@example.com" not in text for text in new.values())  # nothing of the old set...
    assert all("d@example.com" in new[n] for n in MAIL_FILES)  # ...and all of the new one
    assert "c@example.com" in new["postfix/sasl_passwd"] and "a@example.com" in new["dovecot/users.passwd"]


def _rendered(path: str, content: str) -> RenderedFile:
    return RenderedFile(path=path, content=content, mode=0o600, group=None, reloads=None)


def test_a_crash_after_staging_only_leaves_the_old_set_and_the_next_install_removes_the_copies(
    tmp_path: Path,
) -> None:
    ensure_dirs(tmp_path)
    (tmp_path / "postfix/sasl_passwd").write_text("old\n")
    stage(
        [_rendered("postfix/sasl_passwd", "new with a key\n")],
        tmp_path,
        {"postfix/sasl_passwd": OnDisk(b"old\n")},
    )
    assert _leftovers(tmp_path)  # the staged copy a kill -9 here would leave
    assert recover(tmp_path, ["postfix/sasl_passwd"]) == []  # no journal: nothing was swapped
    assert _leftovers(tmp_path) == [] and (tmp_path / "postfix/sasl_passwd").read_text() == "old\n"


def test_a_file_the_crashed_swap_created_is_removed_with_the_rest_of_the_new_set(tmp_path: Path) -> None:
    ensure_dirs(tmp_path)
    (tmp_path / "postfix/sasl_passwd").write_text("old\n")
    files = [_rendered("postfix/sasl_passwd", "new\n"), _rendered("postfix/sender_login_maps", "new\n")]
    disk = {"postfix/sasl_passwd": OnDisk(b"old\n"), "postfix/sender_login_maps": OnDisk(None)}
    swap(stage(files, tmp_path, disk), tmp_path)  # complete, but never confirmed by forget_swap
    assert sorted(recover(tmp_path, disk)) == sorted(disk)
    assert (tmp_path / "postfix/sasl_passwd").read_text() == "old\n"
    assert not (tmp_path / "postfix/sender_login_maps").exists() and _leftovers(tmp_path) == []
