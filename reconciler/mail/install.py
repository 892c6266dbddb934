"""The mail-server gateway: the only code that writes mail files and runs postfix/postconf/postmap/
doveconf/doveadm. Order of work:

1. compare the rendered files with the disk; stop here when nothing differs (no reload);
2. stage each changed file as a temp file in its own directory (fsync, owner, mode);
3. parse the staged Postfix maps with `postmap -s`, where any warning is a failure. This is the
   only check that runs *before* the swap: a map postmap rejects never reaches the daemons;
4. rename the staged files into place, then validate the whole live config (postconf -n/-M,
   postfix check, doveconf -n). These checks run *after* the swap, so the daemons can already use
   the new files while they run: Dovecot re-reads users.passwd by itself (within about a second of
   the change), and every smtpd/smtp process Postfix starts from then on opens the new texthash
   maps, reload or not. A config these checks reject is therefore briefly live, until step 6;
5. reload Postfix only when a map changed (Dovecot is never reloaded, see `_dovecot_caches`), then
   smoke-check: EHLO offers AUTH, and Dovecot accepts a changed user's new key over the auth
   socket, so no key is ever put on a command line;
6. on any failure in 4 or 5 put the previous files back, refresh what was reloaded again (stop +
   start Postfix when the smoke check failed: a plain reload keeps a throttled smtpd hanging for
   60 s) and raise.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import secrets
import shlex
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail.checks import Skipped, skipped_steps
from reconciler.mail.render import PASSWD, STATE, HashEntry, RenderedFile, parse_state
from reconciler.secrets import ApiKey

SECRET_FILE = "state/fingerprint.secret"  # noqa: S105 (a file name)
MAX_OUTPUT = 2000
SMOKE_TIMEOUT = 3.0
AUTH_TIMEOUT = 5.0
STOP_TIMEOUT = 15.0
_DIR_MODES = {"dovecot": 0o755, "postfix": 0o755, "state": 0o700}


class CommandFailed(MailServerError):
    """A mail-server command failed; the message shows command, exit code and output."""

    def __init__(self, command: Sequence[str], returncode: int | None, output: str) -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.output = output.strip()[-MAX_OUTPUT:]
        code = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"`{shlex.join(command)}` {code}: {self.output or '(no output)'}")


@dataclass(frozen=True)
class InstallReport:
    changed: tuple[str, ...] = ()
    reloaded: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()  # the smoke checks that passed
    skipped: tuple[str, ...] = ()  # steps left out by `mail_checks: skip`, each with its reason


@dataclass(frozen=True)
class AuthProbe:
    """A user whose key changed in this render, to prove Dovecot accepts the new key."""

    api_user: str
    key: ApiKey = field(repr=False)


class _OnDisk(NamedTuple):
    content: bytes | None
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: int = 0


class _Staged(NamedTuple):
    file: RenderedFile
    tmp: Path
    target: Path


# --- subprocesses ------------------------------------------------------------------------------


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


def _postfix(settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
    return [settings.postfix_command, *conf, *args]


def _postconf(settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
    return [settings.postconf_command, *conf, *args]


def _postmap_command(settings: Settings) -> str:
    # postmap ships beside postconf; there is no separate setting for it.
    postconf = Path(settings.postconf_command)
    return str(postconf.with_name("postmap")) if postconf.parent != Path() else "postmap"


def _dovecot(command: str, settings: Settings, *args: str) -> list[str]:
    conf = ["-c", settings.dovecot_config] if settings.dovecot_config else []
    return [command, *conf, *args]


# --- reading ----------------------------------------------------------------------------------


def read_previous(mail_dir: Path) -> dict[str, HashEntry]:
    """Fingerprints and hashes of the last render; empty when there was none (or it is not text:
    then every key is hashed again). A file that exists but cannot be read is an error."""
    try:
        return parse_state(_read_bytes(mail_dir / STATE).decode("utf-8"))
    except (FileNotFoundError, UnicodeDecodeError):
        return {}


def fingerprint_secret(mail_dir: Path, settings: Settings, *, create: bool) -> bytes:
    """The HMAC secret for key fingerprints: the setting, else a random one kept in the mail dir.
    Without `create` (check/preview, which write nothing) a missing file gives a throwaway secret,
    which makes every user look changed - true, since there is no state to compare with either."""
    if settings.fingerprint_secret is not None:
        return settings.fingerprint_secret.get_secret_value().encode()
    path = mail_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_bytes(path).strip()
    value = secrets.token_hex(32).encode()
    if create:
        _ensure_dirs(mail_dir)
        _write_atomic(path, value + b"\n", mode=0o600, uid=0, gid=0)
    return value


def _read(path: Path) -> _OnDisk:
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            return _OnDisk(handle.read(), st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime))
    except FileNotFoundError:
        return _OnDisk(None)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _read_bytes(path: Path) -> bytes:
    """The whole file; FileNotFoundError passes through (callers treat it as "none yet"), any
    other OSError becomes a MailServerError naming the path and the reason."""
    try:
        with path.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> MailServerError:
    # The reason only (strerror), never the content: sasl_passwd holds keys.
    reason = exc.strerror or type(exc).__name__
    hint = (
        "; the mail files are root's: run as root (also for `plan` and `render --check`)"
        if isinstance(exc, PermissionError)
        else ""
    )
    return MailServerError(f"cannot read {path}: {reason}{hint}")


def _owner(file: RenderedFile) -> tuple[int, int]:
    if file.group is None:
        return 0, 0
    try:
        return 0, grp.getgrnam(file.group).gr_gid
    except KeyError:
        raise MailServerError(
            f"group {file.group!r} for {file.path} does not exist (setting mail_file_group)"
        ) from None


def _is_root() -> bool:
    return os.geteuid() == 0


def _differs(file: RenderedFile, disk: _OnDisk) -> bool:
    if disk.content != file.content.encode():
        return True
    if disk.mode != file.mode:
        return True
    # Only root can give files away, so a non-root run compares content and mode only.
    return _is_root() and (disk.uid, disk.gid) != _owner(file)


def changed_files(files: Iterable[RenderedFile], mail_dir: Path) -> tuple[str, ...]:
    return tuple(f.path for f in files if _differs(f, _read(mail_dir / f.path)))


# --- writing ----------------------------------------------------------------------------------


def _ensure_dirs(mail_dir: Path) -> None:
    for name, mode in _DIR_MODES.items():
        path = mail_dir / name
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


def _stage_bytes(
    target: Path, data: bytes, *, mode: int, uid: int, gid: int, mtime: int | None = None
) -> Path:
    """Temp file in the target's directory (so rename is atomic), fsynced, final owner and mode set
    before the content is written: a key never sits in a world-readable file, not even briefly."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        if _is_root():
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


def _dovecot_mtime(old: _OnDisk) -> int | None:
    # Dovecot re-reads a passwd-file only when (mtime in whole seconds, size) changed; an equal-size
    # rewrite within the same second (a key change with an equal-length hash) would go unnoticed.
    if old.content is None:
        return None
    return max(int(time.time()), old.mtime + 1)


def _write_atomic(
    path: Path, data: bytes, *, mode: int, uid: int, gid: int, mtime: int | None = None
) -> None:
    tmp = _stage_bytes(path, data, mode=mode, uid=uid, gid=gid, mtime=mtime)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(files: Sequence[RenderedFile], mail_dir: Path, disk: dict[str, _OnDisk]) -> list[_Staged]:
    staged: list[_Staged] = []
    try:
        for file in files:
            target = mail_dir / file.path
            mtime = _dovecot_mtime(disk[file.path]) if file.path == PASSWD else None
            uid, gid = _owner(file)
            staged.append(
                _Staged(
                    file,
                    _stage_bytes(
                        target, file.content.encode(), mode=file.mode, uid=uid, gid=gid, mtime=mtime
                    ),
                    target,
                )
            )
    except BaseException:
        _discard(staged)
        raise
    return staged


def _discard(staged: Iterable[_Staged]) -> None:
    for item in staged:
        item.tmp.unlink(missing_ok=True)


def _swap(staged: Sequence[_Staged]) -> None:
    # The state file goes last: if we stop half-way, a stale state only causes a re-hash next time,
    # whereas a new state beside an old passwd-file would keep an outdated hash forever.
    for item in sorted(staged, key=lambda s: s.file.path == STATE):
        os.replace(item.tmp, item.target)
    for parent in {item.target.parent for item in staged}:
        _fsync_dir(parent)


def _restore(mail_dir: Path, disk: dict[str, _OnDisk], paths: Iterable[str]) -> None:
    for path in paths:
        old, target = disk[path], mail_dir / path
        if old.content is None:
            target.unlink(missing_ok=True)
            continue
        mtime = _dovecot_mtime(_read(target)) if path == PASSWD else None
        _write_atomic(target, old.content, mode=old.mode, uid=old.uid, gid=old.gid, mtime=mtime)


# --- validation, reload, smoke checks ------------------------------------------------------------


def _validate_maps(staged: Iterable[_Staged], settings: Settings) -> None:
    # postmap parses texthash exactly as the daemons will; it only *warns* about a malformed line or
    # a duplicate key (the daemons would silently skip or pick one), so any warning fails here.
    for item in staged:
        if item.file.reloads != "postfix":
            continue
        # -c matters for speed too: with the system main.cf postmap may stall ~2 s on a hostname lookup.
        conf = ["-c", settings.postfix_config_dir] if settings.postfix_config_dir else []
        command = [_postmap_command(settings), *conf, "-s", f"texthash:{item.tmp}"]
        output = run(command, stdout=False)
        if "warning:" in output or "fatal:" in output:
            raise CommandFailed(command, 0, output.replace(str(item.tmp), str(item.target)))


def _validate_live(daemons: set[str], settings: Settings) -> None:
    if "postfix" in daemons:
        run(_postconf(settings, "-n"))
        run(_postconf(settings, "-M"))
        run(_postfix(settings, "check"), tty=True)
    if "dovecot" in daemons:
        run(_dovecot(settings.doveconf_command, settings, "-n"))


def _reload(daemons: set[str], settings: Settings) -> tuple[str, ...]:
    done: list[str] = []
    if "postfix" in daemons:
        run(_postfix(settings, "reload"), tty=True)
        done.append("postfix")
    if "dovecot" in daemons and _dovecot_caches(settings):
        run(_dovecot(settings.doveadm_command, settings, "auth", "cache", "flush"))
        done.append("dovecot auth cache")
    return tuple(done)


def _dovecot_caches(settings: Settings) -> bool:
    # Dovecot re-reads the passwd-file by itself, so it is never reloaded: `doveadm reload` restarts
    # the auth service, and an smtpd started in that window dies ("no SASL authentication
    # mechanisms"), after which Postfix throttles submission for 60 s (seen in our tests). Only an
    # enabled auth cache could keep a removed user or an old key working; flush it then.
    size = run(_dovecot(settings.doveconf_command, settings, "-h", "auth_cache_size")).strip()
    return size not in {"0", ""}


class SmokeFailed(MailServerError):
    """The daemons accepted the config but do not work with it."""


def smoke_ehlo(port: int, host: str = "127.0.0.1", timeout: float = SMOKE_TIMEOUT) -> str:
    """EHLO on the submission port must offer AUTH: a config that validates but breaks SASL makes
    every new smtpd die, and clients then hang instead of getting an error."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo("reconciler-smoke-check")
            offered = client.has_extn("auth")
    except (OSError, smtplib.SMTPException) as exc:
        raise SmokeFailed(f"smoke check: EHLO on {host}:{port} failed: {type(exc).__name__}: {exc}") from None
    if not offered:
        raise SmokeFailed(f"smoke check: EHLO on {host}:{port} does not offer AUTH")
    return f"EHLO {host}:{port} offers AUTH"


def smoke_dovecot_auth(settings: Settings, probe: AuthProbe, timeout: float = AUTH_TIMEOUT) -> str:
    """Authenticate `probe` over Dovecot's auth-client socket, the protocol Postfix speaks: unlike
    `doveadm auth test`, it keeps the key off the command line (visible in ps and /proc)."""
    base_dir = run(_dovecot(settings.doveconf_command, settings, "-h", "base_dir")).strip()
    path = f"{base_dir}/auth-client"
    _wait_next_second()
    try:
        answer = _auth_exchange(path, probe, timeout)
    except OSError as exc:
        raise SmokeFailed(f"smoke check: Dovecot auth socket {path}: {type(exc).__name__}: {exc}") from None
    if not answer.startswith("OK\t"):
        raise SmokeFailed(f"smoke check: Dovecot refused the new key of {probe.api_user}")
    return f"Dovecot auth OK for {probe.api_user}"


def _wait_next_second() -> None:
    # Dovecot stats the passwd-file at most once per wall-clock second, so a lookup in the second
    # of the swap may still see the old file.
    time.sleep(1.05 - (time.time() % 1.0))


def _auth_exchange(path: str, probe: AuthProbe, timeout: float) -> str:
    secret = base64.b64encode(f"\0{probe.api_user}\0{probe.key.reveal()}".encode()).decode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        reader = sock.makefile("r", encoding="utf-8", newline="\n")
        sock.sendall(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        while reader.readline().rstrip("\n") != "DONE":
            pass
        sock.sendall(f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp={secret}\n".encode())
        return reader.readline()


def _smoke(
    reloaded: Sequence[str], daemons: set[str], settings: Settings, probes: Sequence[AuthProbe]
) -> tuple[str, ...]:
    passed: list[str] = []
    if "postfix" in reloaded and settings.submission_port is not None:
        passed.append(smoke_ehlo(settings.submission_port))
    if "dovecot" in daemons and probes:
        passed.append(smoke_dovecot_auth(settings, probes[0]))
    return tuple(passed)


def _restart_postfix(settings: Settings) -> None:
    pid_file = Path(run(_postconf(settings, "-h", "queue_directory")).strip()) / "pid" / "master.pid"
    pid = _read_pid(pid_file)
    run(_postfix(settings, "stop"), tty=True)
    # `postfix stop` returns before the master has exited; an immediate start says "already running".
    if pid is not None:
        wait_for_exit(pid, STOP_TIMEOUT)
    run(_postfix(settings, "start"), tty=True)


def _read_pid(path: Path) -> int | None:
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


# --- the entry point ----------------------------------------------------------------------------


def install(
    files: Sequence[RenderedFile],
    mail_dir: Path,
    settings: Settings,
    *,
    reload: bool,
    probes: Sequence[AuthProbe] = (),
) -> InstallReport:
    """Write what changed, validate, reload and smoke-check; roll back and raise on any failure."""
    skip = skipped_steps(settings, files)
    files = skip.files(files)
    disk = {f.path: _read(mail_dir / f.path) for f in files}
    changed = [f for f in files if _differs(f, disk[f.path])]
    if not changed:
        return InstallReport()
    _ensure_dirs(mail_dir)
    staged = _stage(changed, mail_dir, disk)
    try:
        if skip.postmap is None:
            _validate_maps(staged, settings)
    except BaseException:
        _discard(staged)
        raise
    _swap(staged)
    names = tuple(f.path for f in changed)
    daemons: set[str] = {f.reloads for f in changed if f.reloads is not None}
    report = _activate(names, daemons, mail_dir, settings, disk, reload=reload, probes=probes, skip=skip)
    return replace(report, skipped=skip.steps(daemons, reload=reload))


def _activate(
    names: tuple[str, ...],
    daemons: set[str],
    mail_dir: Path,
    settings: Settings,
    disk: dict[str, _OnDisk],
    *,
    reload: bool,
    probes: Sequence[AuthProbe],
    skip: Skipped,
) -> InstallReport:
    reloaded: list[str] = []  # filled as we go, so a rollback reloads only what was reloaded
    try:
        _validate_live(skip.daemons_validated(daemons), settings)
        if not reload:
            return InstallReport(names)
        live = skip.daemons_reloaded(daemons)
        for daemon in sorted(live, reverse=True):
            reloaded.extend(_reload({daemon}, settings))
        return InstallReport(names, tuple(reloaded), _smoke(reloaded, live, settings, probes))
    except MailServerError as exc:
        raise _roll_back(
            exc, names=names, reloaded=set(reloaded), mail_dir=mail_dir, settings=settings, disk=disk
        ) from exc


def _daemons_of(reloaded: Iterable[str]) -> set[str]:
    return {"dovecot" if name.startswith("dovecot") else name for name in reloaded}


def _roll_back(
    exc: MailServerError,
    *,
    names: tuple[str, ...],
    reloaded: set[str],
    mail_dir: Path,
    settings: Settings,
    disk: dict[str, _OnDisk],
) -> MailServerError:
    notes = ["the previous files were put back"]
    try:
        _restore(mail_dir, disk, names)
        if reloaded:
            # `reloaded` holds what _reload reported ("postfix", "dovecot auth cache"); _reload
            # takes daemon names.
            _reload(_daemons_of(reloaded), settings)
            notes.append("refreshed " + " and ".join(sorted(reloaded)) + " again")
        if isinstance(exc, SmokeFailed) and "postfix" in reloaded:
            _restart_postfix(settings)
            notes.append("Postfix was stopped and started to clear its throttled smtpd")
    except (MailServerError, OSError) as again:
        return MailServerError(f"{exc}; rolling back failed too: {again}")
    return MailServerError(f"{exc}; {', '.join(notes)}")
