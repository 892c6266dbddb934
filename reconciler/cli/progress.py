"""Progress for long work (apply, render's hashing, import), on stderr and only on a terminal: a
pipeline, a CI log or `2>file` gets nothing extra, and stdout is never touched."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from reconciler.cli.options import quiet

REDRAW_EVERY = 0.1  # seconds; a terminal need not be redrawn for every item of 10,000


class Progress:
    """`label: done/total` redrawn in place with a carriage return, erased when done."""

    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = _wanted() if enabled is None else enabled
        self._lock = threading.Lock()  # apply reports outcomes from a thread pool
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        if self.total:  # an open-ended count appears with its first item
            self._draw(force=True)
        return self

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._draw(force=self.done == self.total)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < REDRAW_EVERY):
            return
        self._drawn = now
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        sys.stderr.write(f"\r{self.label}: {count}\x1b[K")
        sys.stderr.flush()


def _wanted() -> bool:
    try:
        return sys.stderr.isatty() and not quiet()
    except ValueError:  # stderr closed
        return False
