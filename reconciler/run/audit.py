"""The local write-ahead audit log (`.reconciler/audit.jsonl`): an intent before each change is
sent, its outcome after; an intent left without outcome by a run that died is settled by the next
plan. Torn lines (a crash mid-write) are reported and skipped."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.run.lock import translated_os_errors

AUDIT_FILE = "audit.jsonl"


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
