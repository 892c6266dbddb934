"""The `render` workflow: reflect users/ on this mail gateway (Postfix + Dovecot), without the
service; a gateway named by RECONCILER_GATEWAY_NAME then reports what it serves (gateways.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.mail import MailReport, keys_for_mail, reflect
from reconciler.mail.checks import preflight
from reconciler.mail.hashing import Hasher
from reconciler.mail.reflect import mail_dir_from, removed_on_failure
from reconciler.workflows.context import Run
from reconciler.workflows.gateways import run_recorded
from reconciler.workflows.mailstep import mail_lock


@dataclass(frozen=True)
class RenderOptions:
    mail_dir: Path | None = None
    reload: bool = True
    check: bool = False
    force_unlock: bool = False
    templates_dir: Path | None = None


def render(
    run: Run, options: RenderOptions, hasher: Callable[[], Hasher | None] = lambda: None
) -> MailReport:
    """Render, validate, swap and reload under the mail-directory lock. `--check` writes nothing,
    like `plan`: it takes no lock (and may run where the state dir is read-only) and records
    nothing. `hasher` is asked once the lock is held (the CLI's progress bar)."""
    settings = run.settings
    target = mail_dir_from(settings, options.mail_dir)  # --mail-dir, else RECONCILER_MAIL_DIR, else an error
    if not options.check:  # what reconcile checks before its first write, checked before this one's
        preflight(settings, target, reload=options.reload, what="written")
    lock = (
        contextlib.nullcontext()
        if options.check
        else mail_lock(run.users_dir, settings, target, "render", force=options.force_unlock)
    )
    with removed_on_failure(target), lock:
        desired = run.desired
        chosen = None if options.check else hasher()

        def step() -> MailReport:
            return reflect(
                desired.users,
                keys_for_mail(desired),
                settings,
                reload=options.reload,
                check=options.check,
                mail_dir=target,
                templates_dir=options.templates_dir,
                hasher=chosen,
            )

        return step() if options.check else run_recorded(run, step, mail_dir=target)
