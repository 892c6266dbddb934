"""New secrets made by the tool itself: an API key that meets the service's key rule, and an age
identity with its recipient. Writing them is the caller's job (`secret_file.write_private`)."""

from __future__ import annotations

import os
import secrets
import string
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import ReconcilerError
from reconciler.secrets import KEY_RE, ApiKey

ALPHABET = string.ascii_letters + string.digits
DEFAULT_LENGTH = 40  # ~238 bits; the rule allows 8-128


def generate_api_key(length: int = DEFAULT_LENGTH) -> ApiKey:
    """A random key of `length` letters and digits with at least one upper and one lower case
    letter and one digit (the service's rule, and more than it asks)."""
    while True:
        value = "".join(secrets.choice(ALPHABET) for _ in range(length))
        if KEY_RE.fullmatch(value) and not value.isupper() and not value.islower():
            return ApiKey(value)


def generate_age_identity() -> tuple[str, str]:
    """(the identity file's text, in age-keygen's format; its public key, the recipient)."""
    from reconciler import agekeys  # pyrage is the `age` extra: loaded only when asked for

    identity = agekeys.new_identity()
    recipient = str(identity.to_public())
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    return text, recipient


def write_private(path: Path, text: str, *, force: bool = False) -> None:
    """Write `text` to a new file of mode 0600 (never readable by others, not even for a moment);
    an existing file is kept unless `force`: a second keygen must not destroy the identity that
    decrypts the repository's keys."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ReconcilerError(f"{path} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise ReconcilerError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file overwritten with --force keeps no wider mode
        handle.write(text)
