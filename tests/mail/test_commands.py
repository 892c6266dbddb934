"""`run`, the one door for mail-server subprocesses: timeouts kill everything the command started,
and diagnostics are sorted into problems (ours) and warnings (the operator's config)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.mail.commands import CommandFailed, run, split_warnings

SPAWNS_A_CHILD = """#!/bin/sh
trap '' HUP TERM
sh -c "trap '' HUP TERM; echo \\$\\$ > {dir}/child; exec sleep 300" &
sleep 300
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
def test_timeout_kills_the_command_and_every_child(tmp_path: Path, tty: bool) -> None:
    script = tmp_path / "hangs"
    script.write_text(SPAWNS_A_CHILD.format(dir=tmp_path))
    script.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(CommandFailed, match=r"timed out: no result after 1 s; killed it and its children"):
        run([str(script)], tty=tty, timeout=1)
    assert time.monotonic() - started < 10
    child = int((tmp_path / "child").read_text())
    assert not _alive(child)


def test_missing_command_is_exit_127() -> None:
    with pytest.raises(CommandFailed, match="exited 127: no-such-postfix: command not found"):
        run(["no-such-postfix", "reload"])


def test_warnings_about_our_files_are_problems_and_others_pass_through() -> None:
    output = (
        "postmap: warning: /etc/postfix/main.cf, line 32: overriding earlier entry: relayhost=\n"
        "postmap: warning: texthash:/m/.sasl_passwd.x1, line 1: expected format: key whitespace value\n"
        "default_transport = error:local mail delivery is disabled\n"
        "doveconf: Fatal: Error in configuration file /etc/dovecot/dovecot.conf line 3\n"
    )
    problems, others = split_warnings(output, ["/m/.sasl_passwd.x1"])
    assert problems == [
        "postmap: warning: texthash:/m/.sasl_passwd.x1, line 1: expected format: key whitespace value",
        "doveconf: Fatal: Error in configuration file /etc/dovecot/dovecot.conf line 3",
    ]
    assert others == ["postmap: warning: /etc/postfix/main.cf, line 32: overriding earlier entry: relayhost="]
