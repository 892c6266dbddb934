"""Which mail-server steps a render may leave out on this machine (setting `mail_checks`).

Production keeps the default `full`: every step runs and a missing command, group or privilege is an
error. `skip` is for a laptop or the demo (`make demo` sets RECONCILER_MAIL_CHECKS=skip): the mail
files are still rendered and written, but each step that cannot work here (its command is not
installed, the file group does not exist, Postfix's commands need root) is left out and named in
one line, so nobody mistakes such a run for a validated, reloaded gateway.
"""

from __future__ import annotations

import grp
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail.commands import SBIN_DIRS, which
from reconciler.mail.hashing import make_hasher
from reconciler.mail.render import RenderedFile


@dataclass(frozen=True)
class Skipped:
    """What a render leaves out, each with its reason; empty with `mail_checks: full`."""

    postmap: str | None = None  # parsing the staged maps with postmap -s
    validate: tuple[tuple[str, str], ...] = ()  # (daemon, reason): postconf/postfix check, doveconf -n
    reload: tuple[tuple[str, str], ...] = ()  # (daemon, reason): reload / cache flush and smoke checks
    group: str | None = None  # the file group (mail_file_group) of dovecot/users.passwd

    def daemons_validated(self, daemons: Iterable[str]) -> set[str]:
        return set(daemons) - {daemon for daemon, _ in self.validate}

    def daemons_reloaded(self, daemons: Iterable[str]) -> set[str]:
        return set(daemons) - {daemon for daemon, _ in self.reload}

    def files(self, files: Sequence[RenderedFile]) -> list[RenderedFile]:
        """The files as they will be written: without the group when that is skipped."""
        if self.group is None:
            return list(files)
        return [replace(f, group=None) if f.group is not None else f for f in files]

    def steps(self, daemons: Iterable[str], *, reload: bool) -> tuple[str, ...]:
        """The skipped steps that this render would otherwise have run, for the one-line notice."""
        touched = set(daemons)
        found = [f"postmap -s ({self.postmap})"] if self.postmap and "postfix" in touched else []
        found += [f"{_VALIDATE[d]} ({why})" for d, why in self.validate if d in touched]
        if reload:
            found += [f"{_RELOAD[d]} ({why})" for d, why in self.reload if d in touched]
        if self.group is not None:
            found.append(self.group)
        return tuple(found)


_VALIDATE = {"postfix": "postconf -n/-M and postfix check", "dovecot": "doveconf -n"}
_RELOAD = {"postfix": "postfix reload and its smoke check", "dovecot": "Dovecot cache flush and auth check"}


def skipped_steps(settings: Settings, files: Sequence[RenderedFile]) -> Skipped:
    """Decide, before anything is written, which steps `mail_checks: skip` leaves out here."""
    if settings.mail_checks == "full":
        return Skipped()
    root = os.geteuid() == 0
    postfix = _missing(settings.postfix_command, settings.postconf_command) or (
        None if root else "the postfix command needs root"
    )
    doveconf = _missing(settings.doveconf_command)
    # doveadm talks to the running Dovecot's sockets, which only root (or dovecot) may open.
    dovecot = doveconf or _missing(settings.doveadm_command) or (None if root else "needs root")
    validate = tuple((d, why) for d, why in (("postfix", postfix), ("dovecot", doveconf)) if why)
    reload = tuple((d, why) for d, why in (("postfix", postfix), ("dovecot", dovecot)) if why)
    return Skipped(
        postmap=_missing(_postmap(settings)),
        validate=validate,
        reload=reload,
        group=_group(files, root=root),
    )


def _missing(*commands: str) -> str | None:
    absent = [c for c in commands if which(c) is None]
    return f"{absent[0]} not installed" if absent else None


def _postmap(settings: Settings) -> str:
    # As install does: postmap ships beside postconf.
    head, _, _ = settings.postconf_command.rpartition("/")
    return f"{head}/postmap" if head else "postmap"


def _group(files: Sequence[RenderedFile], *, root: bool) -> str | None:
    for file in files:
        if file.group is None:
            continue
        try:
            grp.getgrnam(file.group)
        except KeyError:
            return f"group {file.group!r} of {file.path} (no such group)"
        if not root:
            return f"group {file.group!r} of {file.path} (only root can set it)"
    return None


def notice(steps: Sequence[str]) -> str:
    """The one line `render` and `reconcile` print when a run left steps out."""
    return "Mail checks skipped (RECONCILER_MAIL_CHECKS=skip): " + "; ".join(steps) + "."


# Where the daemons read their config when no setting names another (Debian's defaults).
SYSTEM_POSTFIX_DIR = "/etc/postfix"
SYSTEM_DOVECOT_CONFIG = "/etc/dovecot/dovecot.conf"


def preflight(settings: Settings, mail_dir: Path, *, reload: bool, what: str = "applied") -> None:
    """What `reconcile`'s mail step needs, checked before the first write to the service, so a
    known mail-step failure never leaves the service changed and the gateway not. Raises one
    MailServerError listing every problem. With `mail_checks: skip` only what cannot be skipped
    (a writable mail directory, the hashing libraries) is required."""
    problems = [p for p in (_writable(mail_dir), _hashing(settings)) if p]
    if settings.mail_checks == "full":
        problems += _full_problems(settings, reload=reload)
    if problems:
        raise MailServerError(
            f"the mail step cannot run here, so nothing was {what}: "
            + "; ".join(problems)
            + _preview_hint(settings)
        )


def _preview_hint(settings: Settings) -> str:
    if settings.mail_checks != "full":
        return ""
    return (
        ". On a machine that is not a mail gateway (a laptop, a preview), RECONCILER_MAIL_CHECKS=skip "
        "(setting mail_checks: skip) writes the mail files and names each check and reload it left out"
    )


def _full_problems(settings: Settings, *, reload: bool) -> list[str]:
    problems = []
    try:
        grp.getgrnam(settings.mail_file_group)
    except KeyError:
        problems.append(f"group {settings.mail_file_group!r} (setting mail_file_group) does not exist")
    commands = [
        settings.postfix_command,
        settings.postconf_command,
        _postmap(settings),
        settings.doveconf_command,
    ]
    if reload:
        commands.append(settings.doveadm_command)
    problems += [
        f"command {c} not found (searched PATH and {', '.join(SBIN_DIRS)})"
        for c in commands
        if which(c) is None
    ]
    if os.geteuid() != 0:
        problems.append("`postfix check` and the reloads need root")
    postfix_dir = settings.postfix_config_dir or SYSTEM_POSTFIX_DIR
    for config in (Path(postfix_dir) / "main.cf", Path(settings.dovecot_config or SYSTEM_DOVECOT_CONFIG)):
        if not os.access(config, os.R_OK):
            problems.append(f"cannot read {config}")
    return problems


def _writable(mail_dir: Path) -> str | None:
    # The directory, or the nearest parent that exists, since install creates what is missing.
    existing = next((p for p in (mail_dir, *mail_dir.absolute().parents) if p.exists()), Path("/"))
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return None
    return f"cannot write to the mail directory {mail_dir} ({existing} is not a writable directory)"


def _hashing(settings: Settings) -> str | None:
    try:
        make_hasher(settings.hash_scheme)
    except MailServerError as exc:
        return str(exc)
    return None
