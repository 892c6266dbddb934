"""What the mail directory remembers between renders: the fingerprints and hashes of the last
render (so unchanged keys are not hashed again) and the HMAC secret for those fingerprints."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from reconciler.config import Settings
from reconciler.mail.accepted import Served
from reconciler.mail.files import ensure_dirs, read_bytes, write_atomic
from reconciler.mail.render import SASL_PASSWD, STATE, HashEntry, parse_state
from reconciler.secrets import ApiKey

SECRET_FILE = "state/fingerprint.secret"  # noqa: S105 (a file name)


def read_previous(mail_dir: Path) -> dict[str, HashEntry]:
    """Fingerprints and hashes of the last render; empty when there was none (or it is not text:
    then every key is hashed again). A file that exists but cannot be read is an error."""
    try:
        return parse_state(read_bytes(mail_dir / STATE).decode("utf-8"))
    except (FileNotFoundError, UnicodeDecodeError):
        return {}


def hash_state_secret(mail_dir: Path, settings: Settings, *, create: bool) -> bytes:
    """The HMAC secret for key fingerprints: the setting, else a random one kept in the mail dir.
    Without `create` (check/preview, which write nothing) a missing file gives a throwaway secret,
    which makes every user look changed - true, since there is no state to compare with either."""
    if settings.fingerprint_secret is not None:
        return settings.fingerprint_secret.get_secret_value().encode()
    path = mail_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return read_bytes(path).strip()
    value = secrets.token_hex(32).encode()
    if create:
        ensure_dirs(mail_dir)
        write_atomic(path, value + b"\n", mode=0o600, uid=0, gid=0)
    return value


def read_served(mail_dir: Path) -> dict[str, Served]:
    """Each login's senders and key as this gateway serves them now, from sasl_passwd (the only
    file with keys; it passed the structural check when it was written). Empty when there is none."""
    try:
        text = read_bytes(mail_dir / SASL_PASSWD).decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return {}
    senders: dict[str, list[str]] = {}
    keys: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or line.startswith("#"):
            continue
        login, _, key = parts[1].partition(":")
        senders.setdefault(login.lower(), []).append(parts[0])
        keys[login.lower()] = (login, key)
    return {
        name: Served(keys[name][0], tuple(found), ApiKey(keys[name][1])) for name, found in senders.items()
    }
