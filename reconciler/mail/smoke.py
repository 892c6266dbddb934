"""Smoke checks after a reload: the daemons accepted the config, but do they work with it?"""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail.commands import dovecot, run
from reconciler.secrets import ApiKey

SMOKE_TIMEOUT = 3.0
AUTH_TIMEOUT = 5.0


class SmokeFailed(MailServerError):
    """The daemons accepted the config but do not work with it."""


@dataclass(frozen=True)
class AuthProbe:
    """A user whose key changed in this render, to prove Dovecot accepts the new key."""

    api_user: str
    key: ApiKey = field(repr=False)


def smoke_ehlo(port: int, host: str = "127.0.0.1", timeout: float = SMOKE_TIMEOUT) -> str:
    """EHLO on the submission port must offer AUTH: a config that validates but breaks SASL makes
    every new smtpd die, and clients then hang instead of getting an error."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo("reconciler-smoke-check")
            offered = client.has_extn("auth")
    except (OSError, smtplib.SMTPException) as exc:
        raise SmokeFailed(f"smoke check: EHLO on {host}:{port} failed: {type(exc).__name__}: {exc}") from None
    if not offered:
        raise SmokeFailed(f"smoke check: EHLO on {host}:{port} does not offer AUTH")
    return f"EHLO {host}:{port} offers AUTH"


def smoke_dovecot_auth(settings: Settings, probe: AuthProbe, timeout: float = AUTH_TIMEOUT) -> str:
    """Authenticate `probe` over Dovecot's auth-client socket, the protocol Postfix speaks: unlike
    `doveadm auth test`, it keeps the key off the command line (visible in ps and /proc)."""
    base_dir = run(dovecot(settings.doveconf_command, settings, "-h", "base_dir")).strip()
    path = f"{base_dir}/auth-client"
    _wait_next_second()
    try:
        answer = _auth_exchange(path, probe, timeout)
    except OSError as exc:
        raise SmokeFailed(f"smoke check: Dovecot auth socket {path}: {type(exc).__name__}: {exc}") from None
    if not answer.startswith("OK\t"):
        raise SmokeFailed(f"smoke check: Dovecot refused the new key of {probe.api_user}")
    return f"Dovecot auth OK for {probe.api_user}"


def _wait_next_second() -> None:
    # Dovecot stats the passwd-file at most once per wall-clock second, so a lookup in the second
    # of the swap may still see the old file.
    time.sleep(1.05 - (time.time() % 1.0))


def _auth_exchange(path: str, probe: AuthProbe, timeout: float) -> str:
    secret = base64.b64encode(f"\0{probe.api_user}\0{probe.key.reveal()}".encode()).decode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        reader = sock.makefile("r", encoding="utf-8", newline="\n")
        sock.sendall(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        while reader.readline().rstrip("\n") != "DONE":
            pass
        sock.sendall(f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp={secret}\n".encode())
        return reader.readline()


def smoke(
    reloaded: Sequence[str], daemons: set[str], settings: Settings, probes: Sequence[AuthProbe]
) -> tuple[str, ...]:
    passed: list[str] = []
    if "postfix" in reloaded and settings.submission_port is not None:
        passed.append(smoke_ehlo(settings.submission_port))
    if "dovecot" in daemons and probes:
        passed.append(smoke_dovecot_auth(settings, probes[0]))
    return tuple(passed)
