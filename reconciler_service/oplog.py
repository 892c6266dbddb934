"""The operation log (docs/contract.md, "Operation log"): one row per write, in the write's own
transaction, with who wrote and which fields changed (never a value of a key); pruned after
RETENTION as it is written, so no scheduler is needed."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler_service.clock import now, stamp

RETENTION = timedelta(days=90)  # the operation log is kept at least this long (the console's 90)


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


def record(
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


def operation_json(row: sqlite3.Row) -> dict[str, Any]:
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
