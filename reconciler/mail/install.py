"""The install sequence of the mail step; the effects themselves live by job in commands.py
(subprocesses), files.py (the files on disk), smoke.py (smoke checks) and served.py (what the mail
directory remembers). The rendered files arrive already checked for structure (verify.py). Order:

1. compare the rendered files with the disk; stop here when nothing differs (no reload);
2. stage each changed file as a temp file in its own directory (fsync, owner, mode);
3. parse the staged Postfix maps with `postmap -s`: an error or a warning about the staged file is
   a failure, a warning about the operator's own config (main.cf) is passed on. This is the only
   daemon check that runs *before* the swap: a map postmap rejects never reaches the daemons;
4. rename the staged files into place, then validate the whole live config (postconf -n/-M,
   postfix check, doveconf -n). These checks run *after* the swap, so the daemons can already use
   the new files while they run: Dovecot re-reads users.passwd by itself (within about a second of
   the change), and every smtpd/smtp process Postfix starts from then on opens the new texthash
   maps, reload or not. A config these checks reject is therefore briefly live, until step 6;
5. reload Postfix only when a map changed (Dovecot is never reloaded, see
   `commands.dovecot_caches`), then smoke-check: EHLO offers AUTH; Dovecot accepts a changed user's
   new key and an unchanged canary's over the auth socket (no key on a command line); the relay
   accepts each changed credential (SMTP AUTH, no message);
6. on any failure in 4 or 5 put the previous files back, refresh what was reloaded again (stop +
   start Postfix when the smoke check failed: a plain reload keeps a throttled smtpd hanging for
   60 s) and raise RolledBack.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail import commands, files
from reconciler.mail import smoke as checks
from reconciler.mail.checks import Skipped, skipped_steps
from reconciler.mail.commands import CommandFailed, run, wait_for_exit
from reconciler.mail.files import OnDisk, Staged, changed_files
from reconciler.mail.render import RenderedFile
from reconciler.mail.served import SECRET_FILE, hash_state_secret, read_previous
from reconciler.mail.smoke import AuthProbe, SmokeFailed, smoke_dovecot_auth, smoke_ehlo

# The pieces moved to commands/files/smoke/state; these names stay importable from here.
__all__ = [
    "SECRET_FILE",
    "AuthProbe",
    "CommandFailed",
    "InstallReport",
    "RolledBack",
    "SmokeFailed",
    "changed_files",
    "hash_state_secret",
    "install",
    "read_previous",
    "run",
    "smoke_dovecot_auth",
    "smoke_ehlo",
    "wait_for_exit",
]


class RolledBack(MailServerError):
    """A step after the swap failed and the previous files were put back (and refreshed)."""


@dataclass(frozen=True)
class InstallReport:
    changed: tuple[str, ...] = ()
    reloaded: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()  # the smoke checks that passed
    warnings: tuple[str, ...] = ()  # postmap/postconf warnings about the operator's config, not ours
    skipped: tuple[str, ...] = ()  # steps left out by `mail_checks: skip`, each with its reason


def _validate_maps(staged: Iterable[Staged], settings: Settings) -> tuple[str, ...]:
    """postmap parses texthash exactly as the daemons will; it only *warns* about a malformed line
    or a duplicate key (the daemons would silently skip or pick one), so a warning that names the
    staged file fails here. postmap also reads main.cf: its warnings are the operator's, passed on."""
    warnings: list[str] = []
    for item in staged:
        if item.file.reloads != "postfix":
            continue
        command = commands.postmap(settings, "-s", f"texthash:{item.tmp}")
        output = commands.run_for(settings, command, stdout=False)
        problems, others = commands.split_warnings(output, [str(item.tmp)])
        if problems:
            raise CommandFailed(command, 0, "\n".join(problems).replace(str(item.tmp), str(item.target)))
        warnings.extend(w for w in others if w not in warnings)
    return tuple(warnings)


# --- the entry point ----------------------------------------------------------------------------


def install(
    rendered: Sequence[RenderedFile],
    mail_dir: Path,
    settings: Settings,
    *,
    reload: bool,
    probes: Sequence[AuthProbe] = (),
    relay_probes: Sequence[AuthProbe] = (),
) -> InstallReport:
    """Write what changed, validate, reload and smoke-check; roll back and raise on any failure."""
    skip = skipped_steps(settings, rendered)
    rendered = skip.files(rendered)
    if mail_dir.is_dir():
        files.recover(mail_dir, [f.path for f in rendered])  # a crashed install: the old set, whole
    disk = {f.path: files.read(mail_dir / f.path) for f in rendered}
    changed = [f for f in rendered if files.differs(f, disk[f.path])]
    if not changed:
        return InstallReport()
    files.ensure_dirs(mail_dir)
    staged = files.stage(changed, mail_dir, disk)
    try:
        warnings = _validate_maps(staged, settings) if skip.postmap is None else ()
    except BaseException:
        files.discard(staged)
        raise
    names = tuple(f.path for f in changed)
    daemons: set[str] = {f.reloads for f in changed if f.reloads is not None}
    report = _activate(
        staged,
        names,
        daemons,
        mail_dir,
        settings,
        disk=disk,
        reload=reload,
        probes=(probes, relay_probes),
        skip=skip,
    )
    files.forget_swap(mail_dir)  # the new set is validated and in effect
    return replace(
        report,
        warnings=tuple(dict.fromkeys((*warnings, *report.warnings))),
        skipped=skip.steps(daemons, reload=reload),
    )


def _activate(
    staged: Sequence[files.Staged],
    names: tuple[str, ...],
    daemons: set[str],
    mail_dir: Path,
    settings: Settings,
    *,
    disk: dict[str, OnDisk],
    reload: bool,
    probes: tuple[Sequence[AuthProbe], Sequence[AuthProbe]],  # Dovecot's, the relay's
    skip: Skipped,
) -> InstallReport:
    """Swap, validate, reload, smoke-check. From the first rename on, any failure (an OSError,
    Ctrl-C, SIGTERM, a bug) puts the previous files back: unvalidated files never stay live."""
    reloaded: list[str] = []  # filled as we go, so a rollback reloads only what was reloaded
    undo = functools.partial(_roll_back, names=names, mail_dir=mail_dir, settings=settings, disk=disk)
    try:
        files.swap(staged, mail_dir)
        ours = [str(mail_dir / name) for name in names]
        warnings = commands.validate_live(skip.daemons_validated(daemons), settings, ours)
        if not reload:
            return InstallReport(names, warnings=warnings)
        live = skip.daemons_reloaded(daemons)
        for daemon in sorted(live, reverse=True):
            reloaded.extend(commands.reload({daemon}, settings))
        passed = checks.smoke(reloaded, live, settings, *probes)
        return InstallReport(names, tuple(reloaded), passed, warnings)
    except MailServerError as exc:
        raise undo(exc, reloaded=set(reloaded)) from exc
    except OSError as exc:
        raise undo(files.unwritable(mail_dir, exc), reloaded=set(reloaded)) from exc
    except BaseException as exc:
        # Not ours to word (Ctrl-C, SIGTERM, a bug): put the files back, then let it go on.
        rolled = undo(MailServerError(f"stopped by {type(exc).__name__}"), reloaded=set(reloaded))
        exc.add_note(str(rolled))
        raise
    finally:
        files.discard(staged)  # temp files that a failed swap left behind


def _daemons_of(reloaded: Iterable[str]) -> set[str]:
    return {"dovecot" if name.startswith("dovecot") else name for name in reloaded}


def _roll_back(
    exc: MailServerError,
    *,
    names: tuple[str, ...],
    reloaded: set[str],
    mail_dir: Path,
    settings: Settings,
    disk: dict[str, OnDisk],
) -> MailServerError:
    notes = ["the previous files were put back"]
    try:
        files.restore(mail_dir, disk, names)
        if reloaded:
            # `reloaded` holds what reload reported ("postfix", "dovecot auth cache"); reload
            # takes daemon names.
            commands.reload(_daemons_of(reloaded), settings)
            notes.append("refreshed " + " and ".join(sorted(reloaded)) + " again")
        if isinstance(exc, SmokeFailed) and "postfix" in reloaded:
            commands.restart_postfix(settings)
            notes.append("Postfix was stopped and started to clear its throttled smtpd")
        files.forget_swap(mail_dir)  # the old set is back in effect (a failed rollback keeps the journal)
    except (MailServerError, OSError) as again:
        return MailServerError(f"{exc}; rolling back failed too: {again}")
    return RolledBack(f"{exc}; {', '.join(notes)}")
