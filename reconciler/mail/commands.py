"""The mail server's commands: every subprocess the mail step runs (postfix, postconf, postmap,
doveconf, doveadm) goes through `run`, which shows command, exit code and output on failure."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from reconciler.config import Settings
from reconciler.errors import MailServerError

MAX_OUTPUT = 2000
# A diagnostic of postfix/postconf/postmap ("postmap: warning: ...") or Dovecot ("doveconf: Fatal: ...").
_DIAGNOSTIC = re.compile(r"^(?:[\w/.-]+(?:\[\d+\])?: )?(?P<level>fatal|panic|error|warning):", re.IGNORECASE)
STOP_TIMEOUT = 15.0
log = logging.getLogger("reconciler.mail")
# Where Debian (and most systems) install postfix, postconf, postmap, doveconf and doveadm. A normal
# user's PATH often lacks them (Debian puts the sbin directories only on root's), which must not
# make `reconcile --mail-dir ~/mail` say "postfix not found" on a machine that has it.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def which(command: str) -> str | None:
    """The program `command` names: a path as it is, a bare name searched on PATH, then in the
    sbin directories. None when there is none."""
    path = os.environ.get("PATH", os.defpath)
    searched = path.split(os.pathsep)
    extra = [d for d in SBIN_DIRS if d not in searched]
    return shutil.which(command, path=os.pathsep.join([path, *extra]))


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
    print sasl_passwd, keys included). On timeout every process the command started is killed."""
    # Run from the sbin directories when PATH lacks them; messages and logs keep the name as given.
    found = [which(command[0]) or command[0], *command[1:]] if command and "/" not in command[0] else command
    argv = ["script", "-qec", shlex.join(found), "/dev/null"] if tty else list(found)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so a timeout can kill all of it
        )
    except FileNotFoundError:
        raise CommandFailed(command, 127, f"{argv[0]}: command not found") from None
    except OSError as exc:  # not executable, or not a program at all: what a shell calls 126
        raise CommandFailed(command, 126, f"{argv[0]}: {exc.strerror or type(exc).__name__}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        raise CommandFailed(
            command, None, f"no result after {timeout:g} s; killed it and its children"
        ) from None
    except BaseException:
        kill_tree(proc.pid)
        proc.communicate()
        raise
    output = ((out or "") + (err or "")).replace("\r\n", "\n")
    # The command line only: no key is ever an argument (smoke checks use the auth socket).
    log.debug("run: %s -> %d in %.1f ms", shlex.join(command), proc.returncode, _ms(started))
    if proc.returncode != 0:
        raise CommandFailed(command, proc.returncode, output)
    return output


def kill_tree(pid: int, wait: float = 2.0) -> None:
    """SIGKILL the process group of `pid` and every descendant's group, and wait until they are
    gone. The group alone is not enough: under `script` the command runs in a session of its own
    on the pty, and a hung `postfix reload` (postfix-script, postlog) ignores the hangup."""
    children = descendants(pid)
    for group in {pid, *(_pgid(p) for p in children)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for child in children:  # anything that had moved to yet another group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while any(_running(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.01)


def _running(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"  # a zombie is dead, only not yet reaped


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid`, from /proc (Linux, where the mail daemons run)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rfind(")") + 2 :].split()


def _ppid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _pgid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else pid


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


def run_for(settings: Settings, command: Sequence[str], *, tty: bool = False, stdout: bool = True) -> str:
    return run(command, tty=tty, stdout=stdout, timeout=settings.mail_command_timeout)


def split_warnings(output: str, ours: Sequence[str]) -> tuple[list[str], list[str]]:
    """(problems, other warnings) in a command's output. A `fatal:` or `error:` line, and a
    `warning:` that names one of our files (`ours`), is a problem; any other warning is about the
    operator's own config (say, main.cf's `relayhost =` given twice) and only passed on."""
    problems: list[str] = []
    others: list[str] = []
    for line in output.splitlines():
        text = line.strip()
        match = _DIAGNOSTIC.match(text)
        if match is None:
            continue  # config output (postconf -n prints values like `error:local mail ...`)
        if match["level"].lower() != "warning" or any(name in text for name in ours):
            problems.append(text)
        else:
            others.append(text)
    return problems, others


def validate_live(daemons: set[str], settings: Settings, ours: Sequence[str]) -> tuple[str, ...]:
    """Check the live config with the new files in place; return the warnings that are not about
    our files. A failed command, or a warning about one of `ours`, raises."""
    commands: list[tuple[list[str], bool]] = []
    if "postfix" in daemons:
        commands += [(postconf(settings, "-n"), False), (postconf(settings, "-M"), False)]
        commands.append((postfix(settings, "check"), True))
    if "dovecot" in daemons:
        commands.append((dovecot(settings.doveconf_command, settings, "-n"), False))
    warnings: list[str] = []
    for command, tty in commands:
        problems, others = split_warnings(run_for(settings, command, tty=tty), ours)
        if problems:
            raise CommandFailed(command, 0, "\n".join(problems))
        warnings.extend(w for w in others if w not in warnings)
    return tuple(warnings)


def reload(daemons: set[str], settings: Settings) -> tuple[str, ...]:
    done: list[str] = []
    if "postfix" in daemons:
        run_for(settings, postfix(settings, "reload"), tty=True)
        done.append("postfix")
    if "dovecot" in daemons and dovecot_caches(settings):
        run_for(settings, dovecot(settings.doveadm_command, settings, "auth", "cache", "flush"))
        done.append("dovecot auth cache")
    return tuple(done)


def dovecot_caches(settings: Settings) -> bool:
    # Dovecot re-reads the passwd-file by itself, so it is never reloaded: `doveadm reload` restarts
    # the auth service, and an smtpd started in that window dies ("no SASL authentication
    # mechanisms"), after which Postfix throttles submission for 60 s (seen in our tests). Only an
    # enabled auth cache could keep a removed user or an old key working; flush it then.
    size = run_for(settings, dovecot(settings.doveconf_command, settings, "-h", "auth_cache_size")).strip()
    return size not in {"0", ""}


def restart_postfix(settings: Settings) -> None:
    queue = run_for(settings, postconf(settings, "-h", "queue_directory")).strip()
    pid = read_pid(Path(queue) / "pid" / "master.pid")
    run_for(settings, postfix(settings, "stop"), tty=True)
    # `postfix stop` returns before the master has exited; an immediate start says "already running".
    if pid is not None:
        wait_for_exit(pid, STOP_TIMEOUT)
    run_for(settings, postfix(settings, "start"), tty=True)


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


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
