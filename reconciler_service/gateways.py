"""Gateway reports: each mail gateway says what it serves after a render (docs/contract.md, "Gateway
reports").

`PUT /gateways/{name}` stores the last report of that gateway; `GET /gateways` lists them all with
the time the service received each. Who may report for which gateway is reconciler_service/roles.py's
business. Every field is checked here, because `reconciler status` passes the commit to git and
prints the rest: a commit is hex, a result one of three words, a version a plain version string.
Kept in its own table and module so the users API and its store stay as they were.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from reconciler_service.clock import now
from reconciler_service.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    name TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    reported_at TEXT NOT NULL
);
"""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class GatewayReport(BaseModel):
    """The body of `PUT /gateways/{name}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{7,64}$")] | None
    desired_digest: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    rendered_at: datetime
    result: Literal["ok", "failed", "rolled_back"]
    smtp_users: Annotated[StrictInt, Field(ge=0)]
    version: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")]


class Gateways:
    """The gateways table, on the users store's database (its connection pool and transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store._conn() as conn:  # the same package's pool and transactions
            conn.executescript(SCHEMA)

    def put(self, name: str, report: GatewayReport) -> dict[str, Any]:
        stored = {"name": name, **report.model_dump(mode="json"), "reported_at": now()}
        with self.store._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO gateways (name, report, reported_at) VALUES (?, ?, ?)",
                (name, json.dumps(stored), stored["reported_at"]),
            )
        return stored

    def all(self, only: str | None = None) -> list[dict[str, Any]]:
        """Every report, or with `only` that gateway's (if any)."""
        query, args = "SELECT report FROM gateways WHERE name = ?", [only]
        if only is None:
            query, args = "SELECT report FROM gateways ORDER BY name", []
        with self.store._conn() as conn:
            rows = conn.execute(query, args).fetchall()
        return [json.loads(row["report"]) for row in rows]


def valid_name(name: str) -> bool:
    return bool(NAME.match(name))
