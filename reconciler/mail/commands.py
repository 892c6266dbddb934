"""The mail server's commands: every subprocess the mail step runs (postfix, postconf, postmap,
doveconf, doveadm) goes through `run`, which shows command, exit code and output on failure."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from reconciler.config import Settings
from reconciler.errors import MailServerError

MAX_OUTPUT = 2000
STOP_TIMEOUT = 15.0


class CommandFailed(MailServerError):
    """A mail-server command failed; the message shows command, exit code and output."""

    def __init__(self, command: Sequence[str], returncode: int | None, output: str) -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.output = output.strip()[-MAX_OUTPUT:]
        code = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"`{shlex.join(command)}` {code}: {self.output or '(no output)'}")


def run(command: Sequence[str], *, tty: bool = False, timeout: float = 60.0, stdout: bool = True) -> str:
    """Run one command and return its output, or raise CommandFailed with command, code and output.

    `tty=True` runs it under `script`: the postfix(1) command reports fatal errors on stderr only
    when stderr is a terminal (otherwise to syslog, which a container lacks), so without a tty a
    broken config fails with no message at all. `stdout=False` discards stdout (postmap -s would
    print sasl_passwd, keys included)."""
    argv = ["script", "-qec", shlex.join(command), "/dev/null"] if tty else list(command)
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CommandFailed(command, 127, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(command, None, f"no result after {timeout:g} s") from exc
    output = ((proc.stdout or "") + (proc.stderr or "")).replace("\r\n", "\n")
    if proc.returncode != 0:
        raise CommandFailed(command, proc.returncode, output)
    return output


def postfix(settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
    return [settings.postfix_command, *conf, *args]


def postconf(settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
    return [settings.postconf_command, *conf, *args]


def postmap(settings: Settings, *args: str) -> list[str]:
    # postmap ships beside postconf; there is no separate setting for it. -c matters for speed too:
    # with the system main.cf postmap may stall ~2 s on a hostname lookup.
    configured = Path(settings.postconf_command)
    command = str(configured.with_name("postmap")) if configured.parent != Path() else "postmap"
    conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
    return [command, *conf, *args]


def dovecot(command: str, settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.dovecot_config] if settings.dovecot_config else []
    return [command, *conf, *args]


def validate_live(daemons: set[str], settings: Settings) -> None:
    if "postfix" in daemons:
        run(postconf(settings, "-n"))
        run(postconf(settings, "-M"))
        run(postfix(settings, "check"), tty=True)
    if "dovecot" in daemons:
        run(dovecot(settings.doveconf_command, settings, "-n"))


def reload(daemons: set[str], settings: Settings) -> tuple[str, ...]:
    done: list[str] = []
    if "postfix" in daemons:
        run(postfix(settings, "reload"), tty=True)
        done.append("postfix")
    if "dovecot" in daemons and dovecot_caches(settings):
        run(dovecot(settings.doveadm_command, settings, "auth", "cache", "flush"))
        done.append("dovecot auth cache")
    return tuple(done)


def dovecot_caches(settings: Settings) -> bool:
    # Dovecot re-reads the passwd-file by itself, so it is never reloaded: `doveadm reload` restarts
    # the auth service, and an smtpd started in that window dies ("no SASL authentication
    # mechanisms"), after which Postfix throttles submission for 60 s (seen in our tests). Only an
    # enabled auth cache could keep a removed user or an old key working; flush it then.
    size = run(dovecot(settings.doveconf_command, settings, "-h", "auth_cache_size")).strip()
    return size not in {"0", ""}


def restart_postfix(settings: Settings) -> None:
    pid_file = Path(run(postconf(settings, "-h", "queue_directory")).strip()) / "pid" / "master.pid"
    pid = read_pid(pid_file)
    run(postfix(settings, "stop"), tty=True)
    # `postfix stop` returns before the master has exited; an immediate start says "already running".
    if pid is not None:
        wait_for_exit(pid, STOP_TIMEOUT)
    run(postfix(settings, "start"), tty=True)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
