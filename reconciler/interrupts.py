"""SIGINT and SIGTERM during a run that holds the reconcile lock.

Outside the apply phase a signal stops the run at once, by raising KeyboardInterrupt (SIGINT) or
`Terminated` (SIGTERM) on the main thread, so every `with` block (the lock or lease, the HTTP
session) unwinds and releases what it holds. During
the apply phase the first signal only asks the run to stop starting changes (`Interruptible.stop`):
changes already sent finish and are recorded. A second signal raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from reconciler.errors import Interrupted, Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interruptible:
    """The signal state of one run. `stop` is what the apply workers look at."""

    stop: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None
    graceful: bool = False
    unfinished: str = "no change was sent to the service"

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.graceful and self.signum is None:
            self.signum = signum
            self.stop.set()
            return
        if self.signum is None:
            # Nothing is being drained: stop as Ctrl-C always has, with an exception no
            # `except Exception` (or `except ReconcilerError`) on the way out can swallow.
            self.signum = signum
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated
        # A second signal while draining: the main thread is in the apply loop or the mail step.
        raise Interrupted(signum, f"{signal.Signals(signum).name} again: stopped at once; {self.unfinished}")

    @contextlib.contextmanager
    def draining(self, unfinished: str) -> Iterator[None]:
        """While a step that must not be cut short runs: a first signal sets `stop` instead of
        raising (the step looks at it); a second one still raises, saying `unfinished`."""
        self.graceful, self.unfinished = True, unfinished
        try:
            yield
        finally:
            self.graceful = False

    def raise_if_stopped(self, done: str) -> None:
        """After a drained step: leave now if a signal came, saying what was done."""
        if self.signum is not None:
            raise Interrupted(self.signum, f"{signal.Signals(self.signum).name}: stopped; {done}")


@contextlib.contextmanager
def interruptible() -> Iterator[Interruptible]:
    """Install the handlers for the duration of a run (main thread only: elsewhere, as in a test
    that runs the workflow on a thread, signals keep their default behaviour)."""
    state = Interruptible()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous: dict[int, Any] = {sig: signal.signal(sig, state.handle) for sig in SIGNALS}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
