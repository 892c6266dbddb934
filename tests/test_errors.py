"""`exit_code_for`: the one mapping from an exception to the pinned exit codes."""

from __future__ import annotations

import click
import pytest

from reconciler.errors import (
    ExitCode,
    LockHeld,
    MailServerError,
    StalePlan,
    StateError,
    Terminated,
    UnsafePlan,
    ValidationFailed,
    exit_code_for,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationFailed([]), 1),
        (MailServerError("x"), 1),
        (StateError("x"), 1),
        (LockHeld("x"), 1),
        (UnsafePlan("x"), 3),
        (StalePlan("x"), 1),  # no override applies a stale plan: an error, not a safety refusal
        (click.UsageError("no such option"), 1),  # never click's own 2: that is "changes pending"
        (KeyboardInterrupt(), 130),
        (Terminated(), 143),
        (BrokenPipeError(), 141),
        (SystemExit(), 0),
        (SystemExit(2), 2),
        (SystemExit("message"), 1),
        (RuntimeError("a bug"), 1),
        (PermissionError(13, "Permission denied"), 1),
    ],
)
def test_each_exception_has_its_pinned_code(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_terminated_is_not_an_exception_a_step_could_swallow() -> None:
    # `except Exception` (a failed change is reported, the run goes on) must not catch SIGTERM.
    assert not issubclass(Terminated, Exception)
    assert ExitCode.TERMINATED == 128 + 15
