"""The embedded service's storage: SQLite in WAL mode, one connection per thread, every write in a
`BEGIN IMMEDIATE` transaction so concurrent requests serialise on the database, not in Python.

Shared state (contract 2.1) lives here too, in the same transactions as the writes it guards: each
user's `version`, the leases (leases.py: a write fenced by a lease token is refused unless it is
the current token of `reconcile`), and the operation log (oplog.py).

Keys are stored as salted scrypt hashes (keys.py). Verifying one costs milliseconds on purpose, so
successful verifications are remembered under an HMAC of the credentials: listing 100 pages must not
pay 100 hashes. The database file is created owner-only (0600).
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler_service.clock import now, stamp
from reconciler_service.keys import (
    DEFAULT_SCRYPT_N,
    FAST_SCRYPT_N,
    VERIFY_SLOTS,
    VERIFY_WAIT_S,
    VERIFY_WAITERS,
    KeyChecks,
    hash_key,
)
from reconciler_service.leases import (
    Lease,
    LeaseHeld,
    LeaseRequest,
    NoLease,
    check_fence,
    current_lease,
    lease_row,
)
from reconciler_service.oplog import WriteContext, operation_json, record

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
# json_remove drops the annotations the caller may not see (its paths are parameters; none: `$.""`
# names a key no annotation has, since keys are at least one character long).
_PUBLIC_JSON_SQL = """
SELECT json_patch(attributes, json_object(
    'api_user', api_user, 'annotations', json_remove(annotations, ?), 'key_updated_at', key_updated_at,
    'created_at', created_at, 'updated_at', updated_at, 'version', version))
FROM users ORDER BY api_user LIMIT ? OFFSET ?
"""
NO_PATH = '$.""'
DB_MODE = 0o600  # the database holds key hashes and the operation log
_CACHE_LIMIT = 10_000
NO_CONTEXT = WriteContext()  # a write outside any request (the first admin, seeding)


class DuplicateUser(Exception):
    """An api_user that already exists, compared case-insensitively."""


class UnknownUser(Exception):
    """No api_user by that name."""


class VersionMismatch(Exception):
    """An If-Match that names another version than the current one."""


def new_version() -> str:
    return secrets.token_hex(8)


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
    _slots: KeyChecks = field(
        default_factory=lambda: KeyChecks(VERIFY_SLOTS, VERIFY_WAITERS), init=False, repr=False
    )
    _dummy_hash: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        _private(self.path)
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

    def page_json(self, offset: int, limit: int, hidden: str | None = None) -> tuple[list[str], int]:
        """`page`, with each user already rendered as the contract's JSON object by SQLite: the
        list endpoint then only joins strings (a third of its time went to json.loads/dumps).
        `hidden` names one annotation left out of every user."""
        path = NO_PATH if hidden is None else "$." + json.dumps(hidden)
        with self._conn() as conn:
            conn.execute("BEGIN")
            try:
                rows = conn.execute(_PUBLIC_JSON_SQL, (path, limit, offset)).fetchall()
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
        context: WriteContext = NO_CONTEXT,
    ) -> StoredUser:
        key_hash = hash_key(key, self.scrypt_n)
        at = now()
        user = StoredUser(api_user, attributes, annotations, key_hash, at, at, at, new_version())
        try:
            with self._write() as conn:
                check_fence(conn, context.lease_token)
                self._insert(conn, user)
                fields = sorted(_flat(attributes)) + ["api_key"] + (["annotations"] if annotations else [])
                record(conn, context, "create", user.api_user, fields)
        except sqlite3.IntegrityError as exc:
            raise DuplicateUser(api_user) from exc
        return user

    def update(
        self,
        api_user: str,
        change: Callable[[StoredUser], Replacement],
        context: WriteContext = NO_CONTEXT,
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
            check_fence(conn, context.lease_token)
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
                record(conn, context, action, current.api_user, fields)
        return new

    def delete(
        self,
        api_user: str,
        context: WriteContext = NO_CONTEXT,
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
            check_fence(conn, context.lease_token)
            conn.execute("DELETE FROM users WHERE api_user = ?", (api_user,))
            record(conn, context, "delete", row["api_user"], [])
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
            current = current_lease(conn, name)
            if current is not None:
                raise LeaseHeld(current)
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", lease_row(lease))
        return lease

    def renew_lease(self, name: str, token: str, request: LeaseRequest) -> Lease:
        """Extend the current lease that `token` names; LeaseHeld (someone else has it) or NoLease."""
        with self._write() as conn:
            current = current_lease(conn, name)
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
            current = current_lease(conn, name)
            removed = conn.execute("DELETE FROM leases WHERE name = ?", (name,)).rowcount
            if removed:
                record(conn, context, "lease_force", None, [name])
        return current

    def get_lease(self, name: str) -> Lease | None:
        with self._conn() as conn:
            return current_lease(conn, name)

    # Operation log

    def operations(
        self, since: str | None, api_user: str | None, limit: int, actor: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; with `actor`, only the operations that API user made."""
        query = "SELECT * FROM operations WHERE at >= ?"
        args: list[Any] = [since or ""]
        if api_user is not None:
            query += " AND api_user = ? COLLATE NOCASE"
            args.append(api_user)
        if actor is not None:
            query += " AND actor_api_user = ? COLLATE NOCASE"
            args.append(actor)
        query += " ORDER BY id DESC LIMIT ?"
        with self._conn() as conn:
            rows = conn.execute(query, (*args, limit)).fetchall()
        return [operation_json(row) for row in rows]

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


def _private(path: Path) -> None:
    """Create the database owner-only (SQLite gives its -wal and -shm files the database's mode),
    and take group and other rights from one an older version made 0644."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, DB_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, DB_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            side.chmod(DB_MODE)
