"""The embedded service's storage: SQLite in WAL mode, one connection per thread, every write in a
`BEGIN IMMEDIATE` transaction so concurrent requests serialise on the database, not in Python.

Shared state (contract 2.1) lives here too, in the same transactions as the writes it guards: each
user's `version`, the leases (a write fenced by a lease token is refused once that lease is gone),
and the operation log (one row per write, pruned after RETENTION).

Keys are stored as salted scrypt hashes. Verifying one costs milliseconds on purpose, so successful
verifications are remembered under an HMAC of the credentials: listing 100 pages must not pay 100 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    api_user TEXT PRIMARY KEY COLLATE NOCASE,
    attributes TEXT NOT NULL,
    annotations TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    key_updated_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT NOT NULL,
    token TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    process_started TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_api_user TEXT,
    actor TEXT,
    commit_id TEXT,
    run TEXT,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    api_user TEXT,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_at ON operations (at);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    api_user TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_tos TEXT NOT NULL,
    subject TEXT,
    received_at TEXT NOT NULL
);
"""
# The same object as StoredUser.public(), built by SQLite's JSON1 (a test pins that they agree).
_PUBLIC_JSON_SQL = """
SELECT json_patch(attributes, json_object(
    'api_user', api_user, 'annotations', json(annotations), 'key_updated_at', key_updated_at,
    'created_at', created_at, 'updated_at', updated_at, 'version', version))
FROM users ORDER BY api_user LIMIT ? OFFSET ?
"""
RETENTION = timedelta(days=90)  # the operation log is kept at least this long (the console's 90)
DEFAULT_SCRYPT_N = 2**14  # ~50 ms per hash: slow for guessing, fine for one login
FAST_SCRYPT_N = 2**10  # tests and benchmarks seed many users; the format records n per hash
_CACHE_LIMIT = 10_000
# A key check costs one scrypt (~50 ms and 16 MiB at the default cost). Unbounded, a flood of bad
# logins runs hundreds at once: memory grows by gigabytes and a legitimate request waits seconds.
# So at most this many run at once; a few more may wait briefly; the rest are told to come back.
VERIFY_SLOTS = max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
VERIFY_WAITERS = 4 * VERIFY_SLOTS
VERIFY_WAIT_S = 0.5


class DuplicateUser(Exception):
    """An api_user that already exists, compared case-insensitively."""


class UnknownUser(Exception):
    """No api_user by that name."""


class Busy(Exception):
    """Too many key checks are running or waiting; the caller should answer "retry later"."""


class _Slots:
    """A bounded number of concurrent key checks, with a bounded, briefly waiting queue.

    The checks run on a pool of as many threads as there are slots: scrypt's 16 MiB buffers then
    come from a few malloc arenas. Run on the request threads, each of a flood's threads kept its
    own freed buffer resident (peak RSS +290 MiB for 80 clients with only two checks at a time).
    """

    def __init__(self, slots: int, waiters: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._room = threading.BoundedSemaphore(slots + waiters)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="key-check")

    def check(self, key: str, stored: str, wait: float | None) -> bool:
        with self.taken(wait):
            return self._pool.submit(check_key, key, stored).result()

    @contextmanager
    def taken(self, wait: float | None) -> Iterator[None]:
        """Hold a slot; with `wait` set, raise Busy instead of queueing long (None: wait as long
        as it takes, for checks made by an already authenticated admin's write)."""
        if wait is not None and not self._room.acquire(blocking=False):
            raise Busy
        try:
            if not self._slots.acquire(timeout=wait):
                raise Busy
            try:
                yield
            finally:
                self._slots.release()
        finally:
            if wait is not None:
                self._room.release()


class VersionMismatch(Exception):
    """An If-Match that names another version than the current one."""


class LeaseLost(Exception):
    """A write fenced by a lease token that is no longer the current lease of its name."""


class LeaseHeld(Exception):
    """Someone else holds the lease; carries it (with its token) for the 409 answer."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(lease.name)
        self.lease = lease


class NoLease(Exception):
    """No current lease by that name, or not the one the token names (renew/release)."""


@dataclass(frozen=True)
class WriteContext:
    """Who writes, for the operation log, and the lease token that fences the write (if any)."""

    actor_api_user: str | None = None
    actor: str | None = None
    commit: str | None = None
    run: str | None = None
    lease_token: str | None = None

    @property
    def source(self) -> str:
        # The reconciler identifies itself with its headers; any other write is a console/API write.
        return "reconciler" if (self.actor or self.commit or self.run) else "api"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    host: str
    pid: int
    command: str
    token: str
    acquired_at: str
    expires_at: str
    process_started: str = ""  # opaque to the service: the holder's process identity on its host

    def public(self, *, with_token: bool = False) -> dict[str, Any]:
        data = {
            "name": self.name,
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "command": self.command,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "process_started": self.process_started,
        }
        return {**data, "token": self.token} if with_token else data


@dataclass(frozen=True)
class LeaseRequest:
    holder: str
    host: str
    pid: int
    command: str
    ttl_seconds: int
    process_started: str = ""


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(moment: datetime) -> str:
    """The one timestamp format of the store: fixed width, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_version() -> str:
    return secrets.token_hex(8)


def hash_key(key: str, n: int = DEFAULT_SCRYPT_N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return "$".join(("scrypt", str(n), _b64(salt), _b64(digest)))


def check_key(key: str, stored: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(key.encode(), salt=base64.b64decode(salt), n=int(n), r=8, p=1, dklen=32)
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class StoredUser:
    api_user: str
    attributes: dict[str, Any]
    annotations: dict[str, str]
    key_hash: str
    key_updated_at: str
    created_at: str
    updated_at: str
    version: str = ""

    def public(self) -> dict[str, Any]:
        """The user object of the contract: never the key nor its hash."""
        return {
            "api_user": self.api_user,
            **self.attributes,
            "annotations": dict(self.annotations),
            "key_updated_at": self.key_updated_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredUser:
        return cls(
            api_user=row["api_user"],
            attributes=json.loads(row["attributes"]),
            annotations=json.loads(row["annotations"]),
            key_hash=row["key_hash"],
            key_updated_at=row["key_updated_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )


@dataclass(frozen=True)
class Replacement:
    """What an update writes; `key_hash=None` keeps the key (and its key_updated_at)."""

    attributes: dict[str, Any]
    annotations: dict[str, str]
    key_hash: str | None = None


@dataclass
class Store:
    path: Path
    scrypt_n: int = DEFAULT_SCRYPT_N
    # A pool, not one connection per thread: the werkzeug server runs each connection on a new
    # thread, so per-thread connections would open (and keep) one SQLite handle per request.
    _idle: queue.SimpleQueue[sqlite3.Connection] = field(
        default_factory=queue.SimpleQueue, init=False, repr=False
    )
    _all: list[sqlite3.Connection] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _cache_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), init=False, repr=False)
    _slots: _Slots = field(
        default_factory=lambda: _Slots(VERIFY_SLOTS, VERIFY_WAITERS), init=False, repr=False
    )
    _dummy_hash: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(users)")}
            if "version" not in columns:  # a database made before contract 2.1
                conn.execute("ALTER TABLE users ADD COLUMN version TEXT NOT NULL DEFAULT ''")
            leases = {row["name"] for row in conn.execute("PRAGMA table_info(leases)")}
            if "process_started" not in leases:  # a database made before leases recorded it
                conn.execute("ALTER TABLE leases ADD COLUMN process_started TEXT NOT NULL DEFAULT ''")
        # Checked against for unknown names, so a failed login costs the same whether or not the
        # name exists: timing must not tell an attacker which API users there are.
        self._dummy_hash = hash_key(secrets.token_urlsafe(16), self.scrypt_n)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one operation; it goes back to the pool afterwards."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves. check_same_thread=False: a pooled
        # connection is used by one thread at a time, but not always the same one.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._idle = queue.SimpleQueue()

    # Users

    def get(self, api_user: str) -> StoredUser | None:
        with self._conn() as conn:
            row = conn.execute("SELECT * FROM users WHERE api_user = ?", (api_user,)).fetchone()
        return StoredUser.from_row(row) if row else None

    def page_json(self, offset: int, limit: int) -> tuple[list[str], int]:
        """`page`, with each user already rendered as the contract's JSON object by SQLite: the
        list endpoint then only joins strings (a third of its time went to json.loads/dumps)."""
        with self._conn() as conn:
            conn.execute("BEGIN")
            try:
                rows = conn.execute(_PUBLIC_JSON_SQL, (limit, offset)).fetchall()
                total = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            finally:
                conn.execute("COMMIT")
        return [r[0] for r in rows], int(total)

    def create(
        self,
        api_user: str,
        attributes: dict[str, Any],
        key: str,
        annotations: dict[str, str],
        context: WriteContext = WriteContext(),
    ) -> StoredUser:
        key_hash = hash_key(key, self.scrypt_n)
        at = now()
        user = StoredUser(api_user, attributes, annotations, key_hash, at, at, at, new_version())
        try:
            with self._write() as conn:
                _check_fence(conn, context)
                self._insert(conn, user)
                fields = sorted(_flat(attributes)) + ["api_key"] + (["annotations"] if annotations else [])
                _log(conn, context, "create", user.api_user, fields)
        except sqlite3.IntegrityError as exc:
            raise DuplicateUser(api_user) from exc
        return user

    def update(
        self,
        api_user: str,
        change: Callable[[StoredUser], Replacement],
        context: WriteContext = WriteContext(),
        if_match: Callable[[str], bool] | None = None,
    ) -> StoredUser:
        """Read, change and write one user in one transaction. `change` may raise to abort;
        `if_match` (given the current version) refuses the write with VersionMismatch."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM users WHERE api_user = ?", (api_user,)).fetchone()
            if row is None:
                raise UnknownUser(api_user)
            current = StoredUser.from_row(row)
            if if_match is not None and not if_match(current.version):
                raise VersionMismatch(api_user)
            _check_fence(conn, context)
            new = _apply(current, change(current))
            if new != current:
                conn.execute(
                    "UPDATE users SET attributes=?, annotations=?, key_hash=?, key_updated_at=?, "
                    "updated_at=?, version=? WHERE api_user=?",
                    (
                        json.dumps(new.attributes),
                        json.dumps(new.annotations),
                        new.key_hash,
                        new.key_updated_at,
                        new.updated_at,
                        new.version,
                        current.api_user,
                    ),
                )
                action, fields = describe_update(current, new)
                _log(conn, context, action, current.api_user, fields)
        return new

    def delete(
        self,
        api_user: str,
        context: WriteContext = WriteContext(),
        if_match: Callable[[str], bool] | None = None,
    ) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "SELECT api_user, version FROM users WHERE api_user = ?", (api_user,)
            ).fetchone()
            if row is None:
                return False
            if if_match is not None and not if_match(row["version"]):
                raise VersionMismatch(api_user)
            _check_fence(conn, context)
            conn.execute("DELETE FROM users WHERE api_user = ?", (api_user,))
            _log(conn, context, "delete", row["api_user"], [])
            return True

    def seed(self, users: Iterable[tuple[str, dict[str, Any]]], key: str) -> int:
        """Bulk insert for benchmarks: every seeded user shares one key hash (and no log entry)."""
        key_hash = hash_key(key, FAST_SCRYPT_N)
        at = now()
        count = 0
        with self._write() as conn:
            for api_user, attributes in users:
                user = StoredUser(api_user, attributes, {}, key_hash, at, at, at, new_version())
                self._insert(conn, user)
                count += 1
        return count

    @staticmethod
    def _insert(conn: sqlite3.Connection, user: StoredUser) -> None:
        conn.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user.api_user,
                json.dumps(user.attributes),
                json.dumps(user.annotations),
                user.key_hash,
                user.key_updated_at,
                user.created_at,
                user.updated_at,
                user.version,
            ),
        )

    # Leases

    def acquire_lease(self, name: str, request: LeaseRequest) -> Lease:
        """A new lease when `name` is free or its lease expired; LeaseHeld otherwise."""
        moment = datetime.now(UTC)
        lease = Lease(
            name,
            request.holder,
            request.host,
            request.pid,
            request.command,
            secrets.token_urlsafe(24),
            stamp(moment),
            stamp(moment + timedelta(seconds=request.ttl_seconds)),
            request.process_started,
        )
        with self._write() as conn:
            current = _current_lease(conn, name)
            if current is not None:
                raise LeaseHeld(current)
            conn.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _lease_row(lease)
            )
        return lease

    def renew_lease(self, name: str, token: str, request: LeaseRequest) -> Lease:
        """Extend the current lease that `token` names; LeaseHeld (someone else has it) or NoLease."""
        with self._write() as conn:
            current = _current_lease(conn, name)
            if current is None:
                raise NoLease(name)
            if not hmac.compare_digest(current.token, token):
                raise LeaseHeld(current)
            expires = stamp(datetime.now(UTC) + timedelta(seconds=request.ttl_seconds))
            conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (expires, current.name))
        return replace(current, expires_at=expires)

    def release_lease(self, name: str, token: str) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None or not hmac.compare_digest(row["token"], token):
                raise NoLease(name)
            conn.execute("DELETE FROM leases WHERE name = ?", (name,))

    def force_release_lease(self, name: str, context: WriteContext) -> Lease | None:
        """Remove any lease of `name` (expired or not) and log it; the lease that was broken."""
        with self._write() as conn:
            current = _current_lease(conn, name)
            removed = conn.execute("DELETE FROM leases WHERE name = ?", (name,)).rowcount
            if removed:
                _log(conn, context, "lease_force", None, [name])
        return current

    def get_lease(self, name: str) -> Lease | None:
        with self._conn() as conn:
            return _current_lease(conn, name)

    # Operation log

    def operations(self, since: str | None, api_user: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first."""
        query = "SELECT * FROM operations WHERE at >= ?"
        args: list[Any] = [since or ""]
        if api_user is not None:
            query += " AND api_user = ? COLLATE NOCASE"
            args.append(api_user)
        query += " ORDER BY id DESC LIMIT ?"
        with self._conn() as conn:
            rows = conn.execute(query, (*args, limit)).fetchall()
        return [_operation(row) for row in rows]

    # Credentials

    def verify(self, api_user: str, key: str) -> StoredUser | None:
        """The user if `key` is theirs (locks and access rights are the caller's business). Waits
        for a key-check slot as long as it takes."""
        return self._verify(api_user, key, wait=None)

    def authenticate(self, api_user: str, key: str) -> StoredUser | None:
        """`verify` for a login from the network: raises Busy rather than queue behind a flood."""
        return self._verify(api_user, key, wait=VERIFY_WAIT_S)

    def _verify(self, api_user: str, key: str, wait: float | None) -> StoredUser | None:
        user = self.get(api_user)
        name = user.api_user if user is not None else api_user.lower()
        token = hmac.new(self._cache_secret, f"{name}\0{key}".encode(), "sha256").hexdigest()
        if user is not None and self._cache.get(token) == user.key_hash:
            return user  # remembered success: no scrypt for a client's second request
        matches = self._slots.check(key, user.key_hash if user is not None else self._dummy_hash, wait)
        if user is None or not matches:
            return None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = user.key_hash
        return user

    # Relay messages

    def add_message(self, api_user: str, mail_from: str, rcpt_tos: list[str], subject: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO messages (api_user, mail_from, rcpt_tos, subject, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (api_user, mail_from, json.dumps(rcpt_tos), subject, now()),
            )

    def messages(self) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
        return [
            {
                "api_user": r["api_user"],
                "mail_from": r["mail_from"],
                "rcpt_tos": json.loads(r["rcpt_tos"]),
                "subject": r["subject"],
                "received_at": r["received_at"],
            }
            for r in rows
        ]


def _apply(current: StoredUser, change: Replacement) -> StoredUser:
    key_hash = change.key_hash or current.key_hash
    if (change.attributes, change.annotations, key_hash) == (
        current.attributes,
        current.annotations,
        current.key_hash,
    ):
        return current
    at = now()
    return StoredUser(
        api_user=current.api_user,
        attributes=change.attributes,
        annotations=change.annotations,
        key_hash=key_hash,
        key_updated_at=at if change.key_hash else current.key_updated_at,
        created_at=current.created_at,
        updated_at=at,
        version=new_version(),
    )


def describe_update(old: StoredUser, new: StoredUser) -> tuple[str, list[str]]:
    """The log's action and changed field names (dotted, as in users/ files) of one update. Key
    changes are named, never shown; a write that changes the key or the lock is logged as that."""
    before, after = _flat(old.attributes), _flat(new.attributes)
    fields = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if old.annotations != new.annotations:
        fields.append("annotations")
    key_changed = old.key_hash != new.key_hash
    if key_changed:
        fields.append("api_key")
    if key_changed:
        return "key_change", fields
    if "locked" in fields:
        return ("lock" if after.get("locked") else "unlock"), fields
    return "update", fields


def _flat(attributes: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{sub}": inner for sub, inner in value.items()})
        else:
            flat[name] = value
    return flat


def _check_fence(conn: sqlite3.Connection, context: WriteContext) -> None:
    """A write made under a lease is refused once that lease is no longer current (expired, broken
    or taken over), checked in the write's own transaction so no write slips in after the loss."""
    if context.lease_token is None:
        return
    row = conn.execute(
        "SELECT 1 FROM leases WHERE token = ? AND expires_at > ?", (context.lease_token, now())
    ).fetchone()
    if row is None:
        raise LeaseLost()


def _log(
    conn: sqlite3.Connection, context: WriteContext, action: str, api_user: str | None, fields: list[str]
) -> None:
    at = now()
    conn.execute(
        "INSERT INTO operations (at, actor_api_user, actor, commit_id, run, source, action, "
        "api_user, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            at,
            context.actor_api_user,
            context.actor,
            context.commit,
            context.run,
            context.source,
            action,
            api_user,
            json.dumps(fields),
        ),
    )
    # Pruning as we write keeps the log bounded without a scheduler; the index makes it cheap.
    conn.execute("DELETE FROM operations WHERE at < ?", (stamp(datetime.now(UTC) - RETENTION),))


def _operation(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"],
        "actor_api_user": row["actor_api_user"],
        "actor": row["actor"],
        "commit": row["commit_id"],
        "run": row["run"],
        "source": row["source"],
        "action": row["action"],
        "api_user": row["api_user"],
        "fields": json.loads(row["fields"]),
    }


def _current_lease(conn: sqlite3.Connection, name: str) -> Lease | None:
    row = conn.execute("SELECT * FROM leases WHERE name = ? AND expires_at > ?", (name, now())).fetchone()
    return Lease(**dict(row)) if row else None


def _lease_row(lease: Lease) -> tuple[Any, ...]:
    return (
        lease.name,
        lease.holder,
        lease.host,
        lease.pid,
        lease.command,
        lease.token,
        lease.acquired_at,
        lease.expires_at,
        lease.process_started,
    )
