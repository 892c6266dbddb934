"""Log levels for the command line: RECONCILER_LOG, then -q/-v on top. Logs go to stderr, so stdout
stays the command's output (a table, a plan, JSON) and a pipeline never reads a log line.

Modules log under the `reconciler` logger tree (`reconciler.backend.http.client`,
`reconciler.mail`). What they log is names, paths, statuses and timings: never a key, a request
body or a header.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from reconciler.errors import ConfigError
from reconciler.safetext import terminal

ENV_VAR = "RECONCILER_LOG"
LEVELS: dict[str, int] = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
DEFAULT = logging.WARNING
ROOT_LOGGER = "reconciler"


def level_for(verbose: int, quiet: bool, env: Mapping[str, str]) -> int:
    """-q wins (errors only); each -v is one step more than RECONCILER_LOG (default: warning)."""
    if quiet:
        return logging.ERROR
    base = _env_level(env)
    return max(logging.DEBUG, base - 10 * verbose)


def _env_level(env: Mapping[str, str]) -> int:
    raw = env.get(ENV_VAR, "").strip().lower()
    if not raw:
        return DEFAULT
    if raw not in LEVELS:
        raise ConfigError(f"{ENV_VAR}={raw!r} is not one of {', '.join(LEVELS)}")
    return LEVELS[raw]


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the moment of the record (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Records quote names and answers from the service: shown escaped like every message.
            sys.stderr.write(terminal(self.format(record), keep="\n\t") + "\n")
            sys.stderr.flush()  # a log line must be out before the output that follows it
        except (OSError, ValueError):
            self.handleError(record)


def configure(level: int) -> None:
    """Idempotent: one stderr handler on the `reconciler` logger, at `level`."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    handler.setLevel(level)
