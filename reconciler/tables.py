"""Aligned text tables for `status`, `history` and `service messages`: every column but the last is
padded to its widest cell, so a reader's eye runs down a column."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.safetext import terminal


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in table
    ]


def printable(text: str) -> str:
    """Names and values from the service or a log: nothing in them may move the cursor or pass for
    a workflow command; escaped as every other output is (reconciler/safetext.py)."""
    return terminal(text)
