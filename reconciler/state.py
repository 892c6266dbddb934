"""State of the reconciler: the one-run-at-a-time lease (on the service) or lock (local), and the
local write-ahead audit log.

One run at a time is the service's lease `reconcile` (contract 2.1): it excludes runs on every
machine, is renewed in the background while the run lasts, and fences the run's writes. Against a
service without leases the local lock in the state directory (`.reconciler/` beside users/) is the
fallback: it is per service URL and excludes only runs on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from reconciler.errors import LeaseLost, LeasesUnsupported, LockHeld, ReconcilerError, StateError
from reconciler.model import Lease
from reconciler.run.liveness import holder_gone, process_identity

STALE_AFTER = timedelta(hours=2)
AUDIT_FILE = "audit.jsonl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockInfo:
    holder: str
    host: str
    pid: int
    started_at: str
    command: str
    service: str
    process_started: str = ""  # reconciler.run.liveness: tells a dead holder from a reused pid

    def describe(self) -> str:
        return f"{self.holder} on {self.host} (pid {self.pid}, {self.command}, since {self.started_at})"


def actor() -> str:
    """Who runs this: the CI actor when there is one, else user@host."""
    for name in ("RECONCILER_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def lock_path(state_dir: Path, service: str) -> Path:
    digest = hashlib.sha256(service.encode()).hexdigest()[:12]
    return state_dir / f"reconcile-{digest}.lock"


def read_lock(path: Path) -> LockInfo | None:
    try:
        return LockInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _stale(info: LockInfo | None, now: datetime) -> bool:
    if info is None:
        return True  # unreadable: locks are renamed into place whole, so this is damage, not a race
    if info.process_started:
        if holder_gone(info.host, info.pid, info.process_started):
            return True
    elif info.host == socket.gethostname() and not _alive(info.pid):
        return True
    try:
        return now - datetime.fromisoformat(info.started_at) > STALE_AFTER
    except ValueError:
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def reconcile_lock(state_dir: Path, service: str, command: str, *, force: bool = False) -> Iterator[LockInfo]:
    """Hold the lock for one run. A second run fails fast naming the holder; a stale lock (its
    process is gone, or older than STALE_AFTER) is taken over, and `force` takes over any lock."""
    path = lock_path(state_dir, service)
    now = datetime.now(UTC)
    info = LockInfo(
        actor(),
        socket.gethostname(),
        os.getpid(),
        now.isoformat(timespec="seconds"),
        command,
        service,
        process_identity(),
    )
    with translated_os_errors("take the lock in", state_dir):
        state_dir.mkdir(parents=True, exist_ok=True)
        with _guard(path):
            _acquire(path, info, now, force)
    try:
        yield info
    finally:
        with translated_os_errors("release the lock in", state_dir), _guard(path):
            if read_lock(path) == info:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def translated_os_errors(action: str, state_dir: Path) -> Iterator[None]:
    """An OSError of the state directory (a file where the directory should be, no permission, a
    full disk) as a StateError naming the path and the reason, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or state_dir
        # mkdir on a regular file says "File exists", which reads as if all were well.
        reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror or type(exc).__name__
        raise StateError(
            f"cannot {action} the state directory: {where}: {reason} "
            "(setting state_dir, RECONCILER_STATE_DIR)"
        ) from exc


@contextlib.contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Serialise check-and-take on this host: without it, two runs that both find a stale lock (or
    one that finds a lock file not written yet) could both go ahead. The lock is per host anyway."""
    with open(path.with_suffix(".guard"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def _acquire(path: Path, info: LockInfo, now: datetime, force: bool) -> None:
    held = read_lock(path) if path.exists() else None
    if held is not None and not force and not _stale(held, now):
        raise LockHeld(
            f"another run holds the lock: {held.describe()}. If that run is gone, "
            f"run again with --force-unlock (lock file {path})"
        )
    if held is not None and not force:
        log.warning("took over the lock %s of a run that is gone: %s", path, held.describe())
    # Written whole and renamed into place: a reader never sees a half-written lock.
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)


# --- the service's lease ----------------------------------------------------------------------------

LEASE_NAME = "reconcile"
WAIT_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0)  # seconds between attempts while waiting (--lock-timeout)


class LeaseClient(Protocol):
    """What the lease needs from reconciler.backend.http.client.ServiceClient."""

    def acquire_lease(self, name: str, request: dict[str, Any]) -> Lease: ...
    def renew_lease(self, name: str, token: str, request: dict[str, Any]) -> Lease: ...
    def release_lease(self, name: str, token: str) -> None: ...
    def get_lease(self, name: str) -> Lease | None: ...
    def force_release_lease(self, name: str) -> bool: ...
    def use_lease(self, token: str) -> None: ...
    def lose_lease(self, reason: str) -> None: ...


@dataclass
class RunLock:
    """What a run holds: the service's lease, or (fallback) the local lock. `broken` names the lease
    or lock that --force-unlock broke, `warnings` what the person running it must be told."""

    kind: str  # "lease" | "local"
    description: str
    broken: str | None = None
    warnings: list[str] = field(default_factory=list)


def run_id() -> str:
    """The id of this run for the service's log: the CI run when there is one."""
    return os.environ.get("GITHUB_RUN_ID") or uuid.uuid4().hex[:12]


@contextlib.contextmanager
def run_lock(
    client: LeaseClient,
    state_dir: Path,
    service: str,
    command: str,
    *,
    force: bool = False,
    wait: float = 0.0,
    ttl: int = 60,
) -> Iterator[RunLock]:
    """Hold the service's lease for one run, renewed in the background; the client fences its
    writes with it and stops writing once it is lost. A service without leases (404): the local
    lock, with a warning that runs on other machines are not excluded."""
    request = {
        "holder": actor(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "ttl_seconds": ttl,
        "process_started": process_identity(),
    }
    taken_over: list[str] = []
    try:
        broken = _force(client) if force else None
        lease = _with_wait(lambda: _acquire_lease(client, request, taken_over), wait)
    except LeasesUnsupported:
        with _local(state_dir, service, command, force=force, wait=wait) as local:
            yield local
        return
    token = lease.token.get_secret_value() if lease.token else ""
    client.use_lease(token)
    renewer = _Renewer(client, token, request, ttl)
    renewer.start()
    try:
        yield RunLock("lease", f"the service lease '{LEASE_NAME}'", broken, taken_over)
    finally:
        renewer.stop()
        with contextlib.suppress(ReconcilerError):  # it expires by itself anyway
            client.release_lease(LEASE_NAME, token)


def _acquire_lease(client: LeaseClient, request: dict[str, Any], taken_over: list[str]) -> Lease:
    """Take the lease. When the service took our PUT but its answer was lost (the retry then meets
    a lease held by this very process: same holder, host and pid), the lease is ours without its
    token: break it and take it again, rather than fail or wait out the TTL. A lease whose holder
    ran on this host and is gone (killed, crashed: reconciler.run.liveness) is taken over at once,
    saying whose it was; a holder on another host keeps it until its TTL runs out."""
    try:
        return client.acquire_lease(LEASE_NAME, request)
    except LockHeld as exc:
        held = exc.holder
        if not _ours(held, request):
            if not (isinstance(held, Lease) and holder_gone(held.host, held.pid, held.process_started)):
                raise
            taken_over.append(
                f"took over the service lease '{LEASE_NAME}' of a run that is gone "
                f"(its process {held.pid} on this host no longer runs): {held.describe()}"
            )
    client.force_release_lease(LEASE_NAME)
    return client.acquire_lease(LEASE_NAME, request)


def _ours(held: object, request: dict[str, Any]) -> bool:
    return (
        isinstance(held, Lease)
        and held.holder == request["holder"]
        and held.host == request["host"]
        and held.pid == request["pid"]
    )


def _force(client: LeaseClient) -> str | None:
    held = client.get_lease(LEASE_NAME)
    if not client.force_release_lease(LEASE_NAME):
        return None
    return held.describe() if held is not None else "an expired lease"


def _with_wait(acquire: Callable[[], Lease], wait: float) -> Lease:
    deadline, attempt = time.monotonic() + wait, 0
    while True:
        try:
            return acquire()
        except LockHeld as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _held_message(exc, wait) from None
            time.sleep(min(_step(attempt), left))
            attempt += 1


def _held_message(exc: LockHeld, wait: float) -> LockHeld:
    waited = f" (waited {wait:g}s)" if wait else ""
    until = ""
    if isinstance(exc.holder, Lease):
        until = f"; it expires by itself at {exc.holder.expires_at.strftime('%H:%M:%SZ')} unless renewed"
    return LockHeld(
        f"{exc}{waited}{until}. Wait for it with --lock-timeout DURATION (e.g. 5m), or, if that run is "
        "gone, break it with --force-unlock",
        exc.holder,
    )


def _step(attempt: int) -> float:
    return WAIT_STEPS[min(attempt, len(WAIT_STEPS) - 1)]


class _Renewer:
    """Renews the lease every ttl/3 seconds; a failed renewal loses the lease for the client."""

    def __init__(self, client: LeaseClient, token: str, request: dict[str, Any], ttl: int) -> None:
        self.client, self.token, self.request = client, token, request
        self.interval = max(ttl / 3, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.renew_lease(LEASE_NAME, self.token, self.request)
            except LeaseLost as exc:
                self.client.lose_lease(str(exc))
                return
            except ReconcilerError as exc:
                self.client.lose_lease(f"renewing the lease failed: {exc}")
                return


@contextlib.contextmanager
def _local(state_dir: Path, service: str, command: str, *, force: bool, wait: float) -> Iterator[RunLock]:
    warning = (
        "the service has no leases (404 on /leases): using the local lock in "
        f"{state_dir}; runs on other machines are not excluded"
    )
    path = lock_path(state_dir, service)
    held = read_lock(path) if force and path.exists() else None
    deadline = time.monotonic() + wait
    with contextlib.ExitStack() as stack:
        attempt = 0
        while True:
            try:
                stack.enter_context(reconcile_lock(state_dir, service, command, force=force))
                break
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_step(attempt))
                attempt += 1
        broken = held.describe() if held is not None else None
        yield RunLock("local", f"the local lock {path}", broken, [warning])


# --- audit log ------------------------------------------------------------------------------------


def git_commit(directory: Path) -> str | None:
    """The users repo's commit, when it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commits_between(directory: Path, old: str, new: str = "HEAD") -> int | None:
    """How many commits `new` has that `old` lacks, in the users repo; None when unknown (not a
    checkout, or `old` is not in this clone's history)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-list", "--count", f"{old}..{new}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(done.stdout) if done.returncode == 0 and done.stdout.strip().isdigit() else None


@dataclass(frozen=True)
class AuditRead:
    """The readable entries of the audit log, and the numbers of lines that are not JSON (a line
    cut off by a crash mid-write: reported, skipped, never a reason to stop reading)."""

    entries: list[dict[str, Any]]
    damaged: list[int]

    def unsettled(self) -> list[dict[str, Any]]:
        """Intents without an outcome: the run died (kill -9, power) between sending a change
        and recording what happened. The next plan settles them."""
        answered = {e.get("id") for e in self.entries if e.get("event") == "outcome"}
        return [e for e in self.entries if e.get("event") == "intent" and e.get("id") not in answered]

    def shown(self) -> list[dict[str, Any]]:
        """What a person wants to read: outcomes (and lines from before intents existed), plus
        each unsettled intent in its place, marked "outcome unknown"."""
        unknown = {id(e) for e in self.unsettled()}
        return [
            {**e, "outcome": "outcome unknown"} if id(e) in unknown else e
            for e in self.entries
            if e.get("event") != "intent" or id(e) in unknown
        ]


class AuditLog:
    """Append-only JSON lines, written ahead: before each write to the service an `intent` line
    (fsynced, so it survives kill -9 and power loss), after it an `outcome` line with the same id
    (written, not fsynced: it survives kill -9; after a power loss the next plan settles it).
    An intent without an outcome is a change whose fate is unknown until the next plan settles it.
    Entries carry names and field values, never a key.

    Each line is one `write(2)` under an exclusive flock; if the file does not end in a newline
    (a line cut off by a crash), one is added first, so the damage stays on its own line.
    """

    def __init__(self, state_dir: Path, context: Mapping[str, Any]) -> None:
        self.path = state_dir / AUDIT_FILE
        self.context = dict(context)

    def intent(self, **entry: Any) -> str:
        """Record that a change is about to be sent; returns the id its outcome must carry."""
        intent_id = uuid.uuid4().hex
        self._append({"event": "intent", "id": intent_id, "outcome": None, **entry}, sync=True)
        return intent_id

    def outcome(self, intent_id: str | None, **entry: Any) -> None:
        # Not fsynced: kill -9 keeps what write(2) handed the kernel, and an outcome lost with the
        # power is an intent without outcome, which the next plan settles. Only the intent must be
        # on disk before the change is sent; one fsync per change instead of two.
        self._append({"event": "outcome", "id": intent_id, **entry}, sync=False)

    def write(self, **entry: Any) -> None:
        self._append(entry, sync=False)

    def _append(self, entry: Mapping[str, Any], *, sync: bool) -> None:
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **self.context, **entry}
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
        with translated_os_errors("write the audit log in", self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # isolate a line torn by a crash, rather than extend it
                _write_all(fd, line)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def check(self) -> None:
        """Make sure the log can be written, before the first change: a state directory that is a
        file or read-only must stop a run before the service changes, not after its first write."""
        with translated_os_errors("write the audit log in", self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))

    def read(self) -> AuditRead:
        try:
            raw = self.path.read_bytes()
        except OSError:
            return AuditRead([], [])
        entries: list[dict[str, Any]] = []
        damaged: list[int] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                damaged.append(number)
                continue
            if isinstance(entry, dict):
                entries.append(entry)
            else:
                damaged.append(number)
        return AuditRead(entries, damaged)

    def tail(self, count: int) -> list[dict[str, Any]]:
        return self.read().entries[-count:]

    def settle(self, pending: Collection[tuple[str, str]], in_scope: Callable[[str], bool]) -> int:
        """Give each unsettled intent (of an api_user in scope) the outcome a fresh plan shows:
        `pending` holds (api_user lowercased, action) of every change the plan still wants. Returns
        how many were settled."""
        settled = 0
        for intent in self.read().unsettled():
            name = str(intent.get("api_user", ""))
            if not in_scope(name):
                continue
            done = (name.lower(), intent.get("action")) not in pending
            self.outcome(
                intent.get("id"),
                action=intent.get("action"),
                api_user=name,
                key_change=intent.get("key_change", False),
                outcome="ok" if done else "failed",
                detail="settled by a later plan: " + ("in effect" if done else "not in effect"),
            )
            settled += 1
        return settled


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
