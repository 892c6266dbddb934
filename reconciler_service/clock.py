"""The one timestamp format of the service's database and answers."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(moment: datetime) -> str:
    """The one timestamp format of the store: fixed width, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
