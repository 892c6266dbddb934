"""One error family for the whole tool, and the one place that maps errors to exit codes.

Domain code raises these; only the CLI catches them. Messages must never contain an API key:
callers pass names, files and lines, never values that came from a secret.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Pinned exit codes (docs/cli.md): other people's scripts depend on them."""

    OK = 0
    ERROR = 1
    CHANGES_PENDING = 2
    UNSAFE = 3
    INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
    PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`
    TERMINATED = 143  # 128 + SIGTERM


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def location(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        where = f" {self.field}:" if self.field else ""
        return f"{self.location()}:{where} {self.message}"


class ReconcilerError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code: ExitCode = ExitCode.ERROR


class ValidationFailed(ReconcilerError):
    """Declared state (users/, reconciler.yaml) is invalid; carries every problem of the run."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the declared state")


class SecretError(ReconcilerError):
    """A key reference could not be resolved or the key breaks the service's rule."""


class SecretUnavailable(SecretError):
    """The secret is simply not here (unset variable, no key file, no age identity), as on a pull
    request from a fork; unlike a key that is present but unusable, a plan may go on without it."""


class ConfigError(ReconcilerError):
    """Settings (reconciler.yaml, RECONCILER_* variables) are invalid."""


class ServiceError(ReconcilerError):
    """The service answered with an error or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ServiceUnavailable(ServiceError):
    """Network failure, timeout, or 5xx after retries."""


class AuthError(ServiceError):
    """401/403: the reconciler's own credentials are wrong or lack rights."""


class NotFound(ServiceError):
    """404 for a named API user."""


class Conflict(ServiceError):
    """409: the API user already exists."""


class ChangedSincePlan(ServiceError):
    """412: the API user changed on the service since the plan saw it (If-Match); never retried."""


class LeaseLost(ServiceError):
    """The run's lease on the service is gone (expired, broken, renewal failed): no write starts."""


class UnsafePlan(ReconcilerError):
    """A safety guard refused the plan; the message gives numbers and the narrow override."""

    exit_code = ExitCode.UNSAFE


class StalePlan(ReconcilerError):
    """A saved plan no longer matches the desired or live state: an error (exit 1), not a safety
    refusal (3), because no override applies it; the fix is a new plan."""


class LockHeld(ReconcilerError):
    """Another reconcile holds the lock; `holder` is what the lock or lease says about it."""

    def __init__(self, message: str, holder: object | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class Cancelled(ReconcilerError):
    """The person at the terminal said no: nothing was changed, and no mail step follows."""


class Interrupted(ReconcilerError):
    """SIGINT or SIGTERM stopped the run; the message says what was and was not done. Exits with
    128 + the signal number, as a shell reports a process killed by that signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED


class StateError(ReconcilerError):
    """The local state directory (audit log, local locks) cannot be used; names the path and why."""


class StateConflict(ReconcilerError):
    """The state store moved since this run read it (another run wrote it first): its
    compare-and-swap lost, so nothing of this run's state was written. Run again."""


class MailServerError(ReconcilerError):
    """Rendering, validating, installing or reloading the mail server failed."""


class MissingExtra(ReconcilerError):
    """An optional part of the tool is not installed; the message names the extra that brings it
    (`pip install 'reconciler[age]'`), so a small core install fails clearly, not with a traceback."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.extra = extra
        super().__init__(f"{feature} need: pip install 'reconciler[{extra}]' (module {module} is missing)")


class Terminated(BaseException):
    """SIGTERM arrived. Raised from the signal handler so that every `finally` (lock release,
    mail rollback) runs on the way out. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` mistakes it for a failed step and carries on."""


# Signals and a closed pipe: 128 + the signal number, as a shell reports a process they killed.
_INTERRUPTIONS: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
    (Terminated, ExitCode.TERMINATED),
    (BrokenPipeError, ExitCode.PIPE_CLOSED),
)


def exit_code_for(error: BaseException) -> int:
    """The single mapping from an exception to a process exit code (the CLI's `main` is the only
    caller): every exception that leaves a command ends here. Anything not named here, a click
    usage error or a bug, is a plain error: 1, never click's 2, which is pinned to "changes pending"."""
    if isinstance(error, ReconcilerError):
        return error.exit_code
    if isinstance(error, SystemExit):
        code = error.code
        return code if isinstance(code, int) else ExitCode.OK if code is None else ExitCode.ERROR
    return next((code for kind, code in _INTERRUPTIONS if isinstance(error, kind)), ExitCode.ERROR)
