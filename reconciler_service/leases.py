"""Leases (docs/contract.md, "Leases"): one run at a time holds a named lease, and API-user writes
are fenced by the lease `reconcile`. The store's methods run these in their own transactions.
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass
from typing import Any

from reconciler_service.clock import now

# The lease that API-user writes are made under: a write's X-Lease-Token must be its current token.
USERS_LEASE = "reconcile"


class LeaseLost(Exception):
    """A write whose lease token is not the current token of USERS_LEASE (expired, broken, taken
    over, or another lease's)."""


class LeaseHeld(Exception):
    """Someone else holds the lease; carries it (with its token) for the 409 answer."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(lease.name)
        self.lease = lease


class NoLease(Exception):
    """No current lease by that name, or not the one the token names (renew/release)."""


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


def current_lease(conn: sqlite3.Connection, name: str) -> Lease | None:
    row = conn.execute("SELECT * FROM leases WHERE name = ? AND expires_at > ?", (name, now())).fetchone()
    return Lease(**dict(row)) if row else None


def check_fence(conn: sqlite3.Connection, lease_token: str | None) -> None:
    """A write made under the USERS_LEASE is refused unless its token is that lease's current one:
    not once the lease expired, was broken or taken over, and never with another lease's token.
    Checked in the write's own transaction, so no write slips in after the loss."""
    if lease_token is None:
        return
    current = current_lease(conn, USERS_LEASE)
    if current is None or not hmac.compare_digest(current.token, lease_token):
        raise LeaseLost()


def lease_row(lease: Lease) -> tuple[Any, ...]:
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
