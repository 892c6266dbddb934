"""The mail step: reconcile's second half (after the service changes, under the same lease) and
the lock of a mail directory it shares with `render`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import Settings
from reconciler.errors import ExitCode, LockHeld, ValidationFailed
from reconciler.mail import preview, reflect
from reconciler.mail.accepted import MailView, accepted_view
from reconciler.mail.hashing import Hasher
from reconciler.mail.reflect import mail_dir_from, mail_users
from reconciler.mail.served import read_served
from reconciler.run.lock import LockInfo, reconcile_lock
from reconciler.secrets import ApiKey
from reconciler.workflows.context import Reporter, Run
from reconciler.workflows.gateways import run_recorded


@dataclass(frozen=True)
class MailStep:
    mail_dir: Path | None
    reload: bool
    # The CLI's progress line for the slow part (hashing keys), on a terminal; None: no progress.
    hashing: Callable[[str], contextlib.AbstractContextManager[Hasher]] | None = None


def mail_lock_scope(mail_dir: Path) -> str:
    """The lock scope of one mail directory: `render` and `reconcile`'s mail step on this host share
    it, so two runs never stage, swap or roll back the same files at once."""
    return f"mail:{mail_dir.resolve()}"


@contextlib.contextmanager
def mail_lock(
    users_dir: Path, settings: Settings, mail_dir: Path, command: str, *, force: bool = False
) -> Iterator[LockInfo]:
    """Hold the mail-directory lock (in the same state directory as the service lock). `reconcile`
    takes it inside its service lock, never the other way round, so the two cannot deadlock."""
    state_dir = users_dir.parent / settings.state_dir
    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(
                reconcile_lock(state_dir, mail_lock_scope(mail_dir), command, force=force)
            )
        except LockHeld as exc:
            raise LockHeld(f"mail directory {mail_dir} is busy: {exc}") from None
        yield info


def mail_preview(run: Run) -> tuple[str, ...]:
    """Mail files that `reconcile` would rewrite; empty when no mail directory is configured or the
    keys are not available here (a pull request from a fork cannot render sasl_passwd)."""
    if run.settings.mail_dir is None:
        return ()
    try:
        keys = mail_keys(run)
    except ValidationFailed:
        return ()
    return preview(run.desired.users, keys, run.settings)


def mail_keys(run: Run) -> Mapping[str, ApiKey]:
    """The keys the mail files need, from the run's snapshot: every unresolvable one at once."""
    resolved = run.keys.resolve(mail_users(run.desired))
    resolved.raise_if_missing()
    return resolved.keys


def run_mail_step(
    run: Run, mail: MailStep, *, force: bool = False, not_applied: frozenset[str] = frozenset()
) -> int:
    """The mail step of `reconcile`, called under the service lock; takes the mail-directory lock
    too, so a `render` (say, from cron) on the same directory waits its turn (fails fast). It
    renders from the same snapshot of users/ that was just applied, never a re-read, except for
    the users in `not_applied`: the service refused their change, so they keep what the gateway
    served before (reconciler.mail.accepted)."""
    settings = run.settings
    if mail.mail_dir is None and settings.mail_dir is None:
        run.reporter.mail(None)
        return ExitCode.OK
    target = mail_dir_from(settings, mail.mail_dir)
    with mail_lock(run.users_dir, settings, target, "reconcile", force=force):
        served = read_served(target) if not_applied else {}  # only needed when something failed
        view = accepted_view(run.desired.users, mail_keys(run), not_applied, served)
        _report_view(view, run.reporter)
        hashing = mail.hashing(settings.hash_scheme) if mail.hashing else contextlib.nullcontext(None)
        with hashing as hasher:
            report = run_recorded(
                run,
                lambda: reflect(
                    view.users,
                    view.keys,
                    settings,
                    reload=mail.reload,
                    check=False,
                    mail_dir=target,
                    hasher=hasher,
                ),
                mail_dir=target,
            )
    run.reporter.mail(report)
    return ExitCode.OK


def _report_view(view: MailView, reporter: Reporter) -> None:
    if view.kept:
        reporter.warning(
            "the service did not accept the change of "
            + ", ".join(view.kept)
            + ": the gateway keeps serving what it served before"
        )
    if view.left_out:
        reporter.warning(
            "the service did not accept the change of "
            + ", ".join(view.left_out)
            + ": no mail lines (this gateway did not serve them before)"
        )
