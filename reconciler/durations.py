"""Durations as people type them on a command line: `30s`, `5m`, `2h`, `7d` (Terraform's style)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in `text` (`30s`, `5m`, `1h30m`, `7d`); ValueError naming the accepted forms."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 30s, 5m, 2h, 7d")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
