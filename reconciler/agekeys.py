"""Keys kept in the users repo, encrypted with age (https://age-encryption.org) through pyrage.

A team without a secret manager commits `api_key: {age: <armored ciphertext>}`; only holders of an
identity (CI's secret RECONCILER_AGE_IDENTITY, an on-call's key file) can read the key back. The
ciphertext names no recipient, so the repository shows nothing about who can decrypt.

Every error here is a `SecretError` whose message names where an identity came from, never the
identity or the key: callers add the file and line of the `api_key` they were resolving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from reconciler.errors import MissingExtra, SecretError, SecretUnavailable
from reconciler.keyfiles import read_key_file  # the same refusals as a key file: no FIFO, no device

IDENTITY_ENV = "RECONCILER_AGE_IDENTITY"
IDENTITY_FILE_ENV = "RECONCILER_AGE_IDENTITY_FILE"
IDENTITY_PREFIX = "AGE-SECRET-KEY-"
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
MAX_IDENTITY_FILE_BYTES = 64 * 1024
MAX_ARMORED_CHARS = 16 * 1024  # a 128-character key encrypts to well under 1 KiB per recipient

Identity = Any  # pyrage.x25519.Identity (pyrage has no type information)


class AgeNotInstalled(MissingExtra, SecretError):
    """pyrage is an extra: a SecretError too, so the user file whose key needed it is named."""


def _pyrage() -> ModuleType:
    # Loaded on first use: most installs (gateways, repos without age keys) never need it.
    try:
        import pyrage  # ships no type information: ignored in [tool.mypy]
    except ModuleNotFoundError as exc:
        raise AgeNotInstalled("age keys", "age", exc.name or "pyrage") from None
    module: ModuleType = pyrage
    return module


def load_identities(env: Mapping[str, str] | None = None) -> list[Identity]:
    """The identities to decrypt with: RECONCILER_AGE_IDENTITY (the identity itself, for CI
    secrets) and/or RECONCILER_AGE_IDENTITY_FILE (an age identity file, for people)."""
    environ = os.environ if env is None else env
    identities: list[Identity] = []
    if environ.get(IDENTITY_ENV, "").strip():
        identities += parse_identities(environ[IDENTITY_ENV], f"${IDENTITY_ENV}")
    if environ.get(IDENTITY_FILE_ENV, "").strip():
        identities += _read_identity_file(Path(environ[IDENTITY_FILE_ENV]).expanduser())
    if not identities:
        raise SecretUnavailable(
            f"the key is age-encrypted but no identity is set: set {IDENTITY_ENV} (the identity "
            f"itself) or {IDENTITY_FILE_ENV} (a file made by age-keygen)"
        )
    return identities


def parse_identities(text: str, source: str) -> list[Identity]:
    """Every `AGE-SECRET-KEY-1...` line of an identity file's text; `#` comments and blank lines
    are skipped, as age-keygen writes them."""
    lines = [line.strip() for line in text.splitlines()]
    wanted = [line for line in lines if line and not line.startswith("#")]
    if not wanted:
        raise SecretError(f"{source} holds no age identity (expected a line AGE-SECRET-KEY-1...)")
    pyrage = _pyrage()
    identities = []
    for number, line in enumerate(wanted, start=1):
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # pyrage's message is safe, but the line itself is secret: say which one, not what.
            raise SecretError(f"{source}: identity {number} is not an age X25519 identity") from None
    return identities


def _read_identity_file(path: Path) -> list[Identity]:
    label = f"the age identity file ({IDENTITY_FILE_ENV})"
    try:
        raw = read_key_file(path, MAX_IDENTITY_FILE_BYTES, label)
    except SecretUnavailable:
        # Set but absent is a mistake in the setting, not a secret that is simply not here.
        raise SecretError(
            f"cannot read the age identity file {path} ({IDENTITY_FILE_ENV}): it does not exist"
        ) from None
    try:
        return parse_identities(raw.decode("utf-8"), f"the age identity file {path}")
    except UnicodeDecodeError:
        raise SecretError(f"the age identity file {path} is not UTF-8 text") from None


def decrypt(armored: str, identities: Sequence[Identity]) -> str:
    """The plaintext of an armored age message (as pasted under `age: |`), stripped of the
    surrounding whitespace. Raises SecretError when it is not armored age data, or when none of
    `identities` is among its recipients."""
    data = normalize_armor(armored)
    if not identities:
        raise SecretUnavailable("cannot decrypt the age-encrypted key: no identity was given")
    pyrage = _pyrage()
    try:
        plaintext = pyrage.decrypt(data.encode("ascii"), list(identities))
    except pyrage.DecryptError as exc:
        raise SecretError(_decrypt_failure(str(exc))) from None
    try:
        return bytes(plaintext).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError("the age-encrypted key does not decrypt to UTF-8 text") from None


def _decrypt_failure(reason: str) -> str:
    if "No matching keys" in reason:
        return (
            "cannot decrypt the age-encrypted key: it was not encrypted to any of the identities given "
            f"({IDENTITY_ENV} / {IDENTITY_FILE_ENV}); re-encrypt it with `reconciler secret encrypt "
            "--recipient <your age1... public key>`"
        )
    return f"cannot decrypt the age-encrypted key: the ciphertext is damaged ({reason})"


def normalize_armor(armored: str) -> str:
    """age's armor parser is strict about whitespace; YAML indentation and editors are not."""
    if len(armored) > MAX_ARMORED_CHARS:
        raise SecretError("the age-encrypted key is too large to hold one key")
    lines = [line.strip() for line in armored.strip().splitlines() if line.strip()]
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise SecretError(
            f"the age-encrypted key is not armored age data: expected {ARMOR_BEGIN} ... {ARMOR_END}"
        )
    return "\n".join(lines) + "\n"


def new_identity() -> Identity:
    """A fresh X25519 identity (what age-keygen makes)."""
    return _pyrage().x25519.Identity.generate()


def parse_recipients(texts: Sequence[str]) -> list[Any]:
    """`age1...` public keys. A rejected one is named by its position, never quoted: the usual
    mistake is pasting the identity (AGE-SECRET-KEY-1...) itself, which must not reach a terminal,
    shell history or CI logs."""
    pyrage = _pyrage()
    recipients = []
    for number, text in enumerate(texts, start=1):
        try:
            recipients.append(pyrage.x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError:
            raise SecretError(_bad_recipient(number, text)) from None
    if not recipients:
        raise SecretError("give at least one --recipient age1...")
    return recipients


def _bad_recipient(number: int, text: str) -> str:
    message = f"recipient #{number} is not an age1... public key"
    if text.strip().upper().startswith(IDENTITY_PREFIX):
        message += "; it looks like a secret identity: pass the public key (age1...) instead"
    return message


def encrypt(plaintext: str, recipients: Sequence[str]) -> str:
    """Armored age ciphertext of `plaintext` for every recipient (each can decrypt alone)."""
    parsed = parse_recipients(recipients)
    pyrage = _pyrage()
    try:
        armored = pyrage.encrypt(plaintext.encode("utf-8"), parsed, armored=True)
    except pyrage.EncryptError as exc:
        raise SecretError(f"age encryption failed: {exc}") from None
    return bytes(armored).decode("ascii")


def yaml_snippet(armored: str) -> str:
    """What to paste into users/<api_user>.yaml in place of the `api_key:` reference."""
    body = "\n".join(f"    {line}" for line in normalize_armor(armored).splitlines())
    return f"api_key:\n  age: |\n{body}\n"
