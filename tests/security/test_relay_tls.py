"""Issue 20, item 3: a key never crosses the network in clear text on its way to the relay.

The relay smoke check once fell back to AUTH PLAIN without TLS when the relay offered no STARTTLS
(or an attacker stripped it): the relay received `\\0billing@example.com\\0<key>`. Here a real SMTP
server on this host offers AUTH but no STARTTLS; the check is pointed at it by a name that is not a
loopback name (this host's name), as a relay across a network would be, and must not send the key.
The loopback exception (the tests' and the demo's stand-in relay) is explicit and tested too, as is
the shipped Postfix snippet's TLS policy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from reconciler.config import Settings
from reconciler.mail import default_templates_dir, render_snippets, template_environment
from reconciler.mail.smoke import AuthProbe, SmokeFailed, smoke_relay_auth
from reconciler.secrets import ApiKey
from reconciler_service.server import free_port
from tests.fixtures.service import new_key

USER = "billing@example.com"


@dataclass
class PlainRelay:
    """An SMTP server that offers AUTH PLAIN/LOGIN and no STARTTLS, and records every login."""

    address: str
    port: int
    logins: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


def _this_hosts_name() -> tuple[str, str]:
    """(a name for this host that is not a loopback name, the address it resolves to)."""
    name = socket.gethostname()
    try:
        return name, socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this host's name {name} does not resolve")


@pytest.fixture
def plain_relay() -> Iterator[PlainRelay]:
    _, address = _this_hosts_name()
    relay = PlainRelay(address, free_port(address))
    controller = Controller(
        object(),
        hostname=address,
        port=relay.port,
        authenticator=relay,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


def _check(relay: PlainRelay, host: str, key: str, **settings: Any) -> str:
    configured = Settings(relay_host=host, relay_port=relay.port, **settings)
    return smoke_relay_auth(configured, AuthProbe(USER, ApiKey(key)))


def test_a_relay_without_starttls_off_loopback_never_receives_the_key(plain_relay: PlainRelay) -> None:
    name, _ = _this_hosts_name()
    key = new_key()
    with pytest.raises(SmokeFailed, match="does not offer STARTTLS") as raised:
        _check(plain_relay, name, key)
    assert plain_relay.logins == [], "the key went to the relay in clear text"
    assert key not in str(raised.value)


def test_the_loopback_relay_is_the_explicit_exception(plain_relay: PlainRelay) -> None:
    if plain_relay.address != "127.0.0.1":
        pytest.skip("this host's name does not resolve to 127.0.0.1")
    key = new_key()
    assert "accepts the key" in _check(plain_relay, "127.0.0.1", key)
    assert plain_relay.logins == [(USER, key)]


def test_the_documented_setting_allows_a_relay_without_tls(plain_relay: PlainRelay) -> None:
    name, _ = _this_hosts_name()
    key = new_key()
    assert "accepts the key" in _check(plain_relay, name, key, allow_insecure_relay=True)
    assert plain_relay.logins == [(USER, key)]


def _main_cf(relay_host: str) -> list[str]:
    settings = Settings(relay_host=relay_host, relay_port=587)
    snippets = render_snippets(
        Path("/etc/reconciler/mail"), settings, template_environment(default_templates_dir())
    )
    return [line.strip() for line in snippets["postfix-main.cf"].splitlines() if not line.startswith("#")]


def test_the_postfix_snippet_requires_tls_and_no_plaintext_mechanism_on_the_relay_hop() -> None:
    lines = _main_cf("relay.example.net")
    assert "smtp_tls_security_level = encrypt" in lines
    assert "smtp_sasl_security_options = noanonymous, noplaintext" in lines
    # Loopback (the stand-in relay offers no TLS) is the one exception, stated in the file itself.
    loopback = _main_cf("127.0.0.1")
    assert "smtp_tls_security_level = may" in loopback
    assert "smtp_tls_security_level = encrypt" not in loopback


def test_the_recipe_in_docs_mail_enforces_tls_on_the_relay_hop() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs/mail.md").read_text()
    assert '"smtp_tls_security_level = $RELAY_TLS"' in doc
    assert ': "${RELAY_TLS:=encrypt}"' in doc
    assert 'RELAY_SASL="noanonymous, noplaintext"' in doc
