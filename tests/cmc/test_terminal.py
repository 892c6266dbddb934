"""The guided session on a real pseudo-terminal: the CLI in a subprocess, the console driver in this
process doing each step when the prompt asks, as the person at the terminal would."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

from reconciler.backend.cmc.steps import Kind
from tests.cli.process import COMMAND, base_env
from tests.cmc.conftest import Cmc

PROMPT = b"done, skip or stop"
HEADER = re.compile(rb"\[(\d+)/\d+\] (\w+) (\S+)")
SHOWN_KEY = re.compile(rb"API Key: ([A-Za-z0-9]+)")


def guided(cmc: Cmc, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run `reconciler <args>` on a pty; at each prompt, ask for the key when the step needs one,
    do the step with the driver, then answer done."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("RECONCILER_", "KEY_"))}
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [*COMMAND, *args],
        cwd=cmc.root,
        env=base_env(cmc.root) | env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    screen, answered = b"", 0
    asked: set[bytes] = set()  # the steps whose key was asked for
    deadline = time.monotonic() + timeout
    try:
        while (time.monotonic() < deadline and proc.poll() is None) or select.select([primary], [], [], 0.2)[
            0
        ]:
            if not _readable(primary, 0.1):
                continue
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            screen += chunk
            if screen.count(PROMPT) > answered:
                answered = screen.count(PROMPT)
                os.write(primary, _answer(cmc, screen, asked))
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return code, screen.decode(errors="replace").replace("\r\n", "\n")


def _readable(fd: int, wait: float) -> bool:
    return bool(select.select([fd], [], [], wait)[0])


def _answer(cmc: Cmc, screen: bytes, asked: set[bytes]) -> bytes:
    number, raw_kind, raw_user = HEADER.findall(screen)[-1]
    kind, api_user = Kind(raw_kind.decode()), raw_user.decode()
    if kind in (Kind.CREATE, Kind.KEY) and number not in asked:
        asked.add(number)
        return b"key\n"
    key = SHOWN_KEY.findall(screen)[-1].decode() if kind in (Kind.CREATE, Kind.KEY) else ""
    driver = cmc.standin.driver
    {
        Kind.CREATE: lambda: driver.add(api_user, key),
        Kind.KEY: lambda: driver.change_key(api_user, key),
        Kind.LOCK: lambda: driver.lock(api_user),
        Kind.UNLOCK: lambda: driver.unlock(api_user),
        Kind.DELETE: lambda: driver.delete(api_user),
    }[kind]()
    return b"done\n"


def test_the_key_is_shown_once_on_the_terminal_and_nowhere_else(cmc: Cmc) -> None:
    key = cmc.declare("app@example.com", locked=True)
    code, screen = guided(cmc, "apply")
    assert code == 0, screen
    assert screen.count(key) == 1
    assert "2 of 2 change(s) done and verified" in screen
    state_dir = cmc.root / ".reconciler"
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), f"the key is in {path}"
    assert cmc.standin.account.user("app@example.com").locked  # type: ignore[union-attr]


def test_stop_at_the_terminal_waits_for_a_person_and_the_next_session_goes_on(
    cmc: Cmc, tmp_path: Path
) -> None:
    cmc.declare("app@example.com")
    env = {k: v for k, v in os.environ.items() if k.startswith(("RECONCILER_", "KEY_"))}
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [*COMMAND, "apply"],
        cwd=cmc.root,
        env=base_env(cmc.root) | env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    screen = b""
    while PROMPT not in screen:
        screen += os.read(primary, 4096)
    os.write(primary, b"stop\n")
    assert proc.wait(timeout=30) == 4
    os.close(primary)
    code, screen_two = guided(cmc, "apply")
    assert code == 0 and "[1/1] create app@example.com" in screen_two


def test_reconcile_runs_the_mail_step_once_the_session_is_verified(cmc: Cmc) -> None:
    cmc.monkeypatch.setenv("RECONCILER_MAIL_CHECKS", "skip")
    cmc.declare("app@example.com")
    mail = cmc.root / "mail"
    code, screen = guided(cmc, "reconcile", "--mail-dir", str(mail), "--no-reload")
    assert code == 0, screen
    relayhosts = (mail / "postfix" / "sender_relayhost_maps").read_text()
    assert f"app@example.com [127.0.0.1]:{cmc.standin.smtp_port}" in relayhosts
