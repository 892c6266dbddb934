"""Render + install in one call: what `render` and `reconcile` run, and what `plan` previews."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import Settings
from reconciler.desired import DesiredState
from reconciler.errors import MailServerError
from reconciler.mail.hashing import Hasher, PendingHasher, make_hasher
from reconciler.mail.install import AuthProbe, changed_files, hash_state_secret, install, read_previous
from reconciler.mail.render import (
    MAIL_SERVER_FILES,
    Rendered,
    key_for,
    needs_mail_lines,
    render_mail,
    template_environment,
    templates_dir_for,
)
from reconciler.mail.verify import verify
from reconciler.model import UserSpec
from reconciler.secrets import ApiKey, resolve_all

MAX_RELAY_PROBES = 20


@dataclass(frozen=True)
class MailReport:
    """What a render did (or, with `check`, would do). Names only: never a key or a hash."""

    mail_dir: Path
    changed: tuple[str, ...]
    reloaded: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    hashes: int = 0  # keys hashed in this run (0 for an unchanged key, and always 0 with check)
    users: int = 0  # users with SMTP access that got lines
    check: bool = False
    warnings: tuple[str, ...] = ()  # about the operator's config (main.cf, ...), not our files
    skipped: tuple[str, ...] = ()  # steps `mail_checks: skip` left out, with reasons (mail/checks.py)


def mail_dir_from(settings: Settings, mail_dir: Path | None) -> Path:
    if mail_dir is not None:
        return mail_dir.expanduser()  # `--mail-dir=~/mail` reaches us unexpanded
    if settings.mail_dir is None:
        raise MailServerError("no mail directory: pass --mail-dir or set RECONCILER_MAIL_DIR")
    return Path(settings.mail_dir)


@contextlib.contextmanager
def removed_on_failure(mail_dir: Path) -> Iterator[None]:
    """A first render that fails leaves no half-made mail directory behind (its state/ holds a
    fingerprint secret, and a second run would take the leftovers for a working gateway)."""
    created = not mail_dir.exists()
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(mail_dir, ignore_errors=True)
        raise


def reflect(
    desired_users: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    settings: Settings,
    *,
    reload: bool,
    check: bool,
    mail_dir: Path | None = None,
    templates_dir: Path | None = None,
    hasher: Hasher | None = None,
) -> MailReport:
    """Render the mail files for `desired_users` and install them. With `check`, write nothing and
    hash nothing: report the files that would change (the CLI exits 2 when there are any)."""
    target = mail_dir_from(settings, mail_dir)
    if hasher is None:
        hasher = PendingHasher(settings.hash_scheme) if check else make_hasher(settings.hash_scheme)
    rendered = _render(
        desired_users, keys, settings, target, templates_dir=templates_dir, hasher=hasher, check=check
    )
    if check:
        return MailReport(target, changed_files(rendered.files, target), users=rendered.users, check=True)
    probes, relay_probes = _probes(keys, rendered)
    report = install(
        rendered.files, target, settings, reload=reload, probes=probes, relay_probes=relay_probes
    )
    return MailReport(
        target,
        report.changed,
        report.reloaded,
        report.smoke,
        rendered.hashes,
        rendered.users,
        warnings=report.warnings,
        skipped=report.skipped,
    )


def preview(
    desired_users: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    settings: Settings,
    *,
    mail_dir: Path | None = None,
    templates_dir: Path | None = None,
) -> tuple[str, ...]:
    """Mail-server files (relative to the mail dir) that a render would change; for `plan`. Writes
    nothing. The state file is left out: it is reconciler's bookkeeping, not mail-server config."""
    changed = reflect(
        desired_users,
        keys,
        settings,
        reload=False,
        check=True,
        mail_dir=mail_dir,
        templates_dir=templates_dir,
    ).changed
    return tuple(name for name in changed if name in MAIL_SERVER_FILES)


def keys_for_mail(desired: DesiredState, env: Mapping[str, str] | None = None) -> Mapping[str, ApiKey]:
    """Resolve the keys of the users that get mail lines, and only those: a gateway need not hold
    the keys of locked or HTTP-only users. Every unresolvable key is reported at once."""
    resolved = resolve_all(desired, env=env, names=mail_users(desired))
    resolved.raise_if_missing()
    return resolved.keys


def mail_users(desired: DesiredState) -> list[str]:
    """The users whose keys the mail files need: a gateway need not hold the others' keys."""
    return [u.api_user for u in desired.users if needs_mail_lines(u)]


def _render(
    users: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    settings: Settings,
    mail_dir: Path,
    *,
    templates_dir: Path | None,
    hasher: Hasher,
    check: bool,
) -> Rendered:
    templates = template_environment(templates_dir_for(settings, templates_dir))
    rendered = render_mail(
        users,
        keys,
        settings,
        read_previous(mail_dir),
        secret=hash_state_secret(mail_dir, settings, create=not check),
        hasher=hasher,
        templates=templates,
    )
    verify(rendered.files, rendered.expected)  # a custom template's typo stops here, nothing written
    return rendered


def _probes(
    keys: Mapping[str, ApiKey], rendered: Rendered
) -> tuple[tuple[AuthProbe, ...], tuple[AuthProbe, ...]]:
    """Dovecot: one user whose hash was computed in this run (proves the new lines) and one whose
    hash was kept (a canary: proves the rest of the file still works); each costs a slow hash on
    Dovecot's side. The relay: each changed credential, up to MAX_RELAY_PROBES (a first render of
    a big fleet would otherwise log in thousands of times)."""
    changed = rendered.rehashed
    canary = next((u for u in rendered.expected.hashes if u not in set(changed)), None)
    chosen = [*changed[:1], *([canary] if canary is not None else [])]
    return _with_keys(keys, chosen), _with_keys(keys, changed[:MAX_RELAY_PROBES])


def _with_keys(keys: Mapping[str, ApiKey], names: Sequence[str]) -> tuple[AuthProbe, ...]:
    return tuple(AuthProbe(u, key) for u in names if (key := key_for(keys, u)) is not None)
