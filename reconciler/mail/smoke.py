"""Smoke checks after a reload: the daemons accepted the config, but do they work with it?"""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.config import Settings, is_loopback_host, relay_endpoint
from reconciler.errors import MailServerError
from reconciler.mail.commands import dovecot, run
from reconciler.secrets import ApiKey

SMOKE_TIMEOUT = 3.0
AUTH_TIMEOUT = 5.0


class SmokeFailed(MailServerError):
    """The daemons accepted the config but do not work with it."""


@dataclass(frozen=True)
class AuthProbe:
    """A user and its key, to prove Dovecot (or the relay) accepts what the new files say."""

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


def smoke_dovecot_auth(
    settings: Settings, probe: AuthProbe, timeout: float = AUTH_TIMEOUT, *, wait: bool = True
) -> str:
    """Authenticate `probe` over Dovecot's auth-client socket, the protocol Postfix speaks: unlike
    `doveadm auth test`, it keeps the key off the command line (visible in ps and /proc)."""
    base_dir = run(dovecot(settings.doveconf_command, settings, "-h", "base_dir")).strip()
    path = f"{base_dir}/auth-client"
    if wait:
        _wait_next_second()
    try:
        answer = _auth_exchange(path, probe, timeout)
    except OSError as exc:
        raise SmokeFailed(f"smoke check: Dovecot auth socket {path}: {type(exc).__name__}: {exc}") from None
    if not answer.startswith("OK\t"):
        raise SmokeFailed(f"smoke check: Dovecot refused the key of {probe.api_user}")
    return f"Dovecot auth OK for {probe.api_user}"


def smoke_relay_auth(settings: Settings, probe: AuthProbe, timeout: float = SMOKE_TIMEOUT) -> str:
    """SMTP AUTH against the service's relay with the credential sasl_passwd now holds, and QUIT:
    no message is sent. STARTTLS first, verified, as the shipped Postfix snippet requires
    (`smtp_tls_security_level = encrypt`): a relay that is not on loopback and does not offer it
    (or a network that strips it) never sees the key, unless `allow_insecure_relay` says so."""
    host, port = relay_endpoint(settings)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo("reconciler-smoke-check")
            if client.has_extn("starttls"):
                # Verified against the system CAs (and ca_bundle): the key is about to be sent.
                client.starttls(context=ssl.create_default_context(cafile=settings.ca_bundle))
                client.ehlo("reconciler-smoke-check")
            elif not (is_loopback_host(host) or settings.allow_insecure_relay):
                raise SmokeFailed(
                    f"smoke check: the relay {host}:{port} does not offer STARTTLS: the key is not sent "
                    "in clear text to a host that is not on loopback (a relay without TLS, or a network "
                    "that strips it); RECONCILER_ALLOW_INSECURE_RELAY=true overrides (docs/mail.md)"
                )
            client.login(probe.api_user, probe.key.reveal())
    except smtplib.SMTPAuthenticationError as exc:
        raise SmokeFailed(
            f"smoke check: the relay {host}:{port} refused the key of {probe.api_user} ({exc.smtp_code})"
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        # The exception text of a failed login may echo the server's answer, never our key.
        raise SmokeFailed(f"smoke check: relay {host}:{port}: {type(exc).__name__}") from None
    return f"relay {host}:{port} accepts the key of {probe.api_user}"


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
    reloaded: Sequence[str],
    daemons: set[str],
    settings: Settings,
    probes: Sequence[AuthProbe],
    relay_probes: Sequence[AuthProbe] = (),
) -> tuple[str, ...]:
    """EHLO after a Postfix reload; Dovecot auth for `probes` (a changed user and an unchanged
    canary) after a passwd-file change; the relay for each changed credential of sasl_passwd."""
    passed: list[str] = []
    if "postfix" in reloaded and settings.submission_port is not None:
        passed.append(smoke_ehlo(settings.submission_port))
    if "dovecot" in daemons:
        for index, probe in enumerate(probes):
            passed.append(smoke_dovecot_auth(settings, probe, wait=index == 0))
    if "postfix" in daemons:
        passed.extend(smoke_relay_auth(settings, probe) for probe in relay_probes)
    return tuple(passed)
