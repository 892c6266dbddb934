"""The mail step with real parts: `verify --mail-dir` renders what was verified on a real Postfix +
Dovecot gateway, whose relay hop authenticates to the configured Customers Mail Cloud relay (the
stand-in). A message the stand-in's relay records under the user's login proves the hop."""

from __future__ import annotations

import time

import pytest

from tests.cmc.conftest import Cmc, new_key
from tests.fixtures.mail import MailSandbox, settle_dovecot

pytestmark = pytest.mark.mail


def relayed(cmc: Cmc, api_user: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(login == api_user for login, _ in cmc.standin.relay.messages):
            return True
        time.sleep(0.05)
    return False


def test_the_gateway_serves_what_was_verified_and_relays_to_the_cmc_relay(
    cmc: Cmc, mail_sandbox: MailSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in mail_sandbox.env().items():
        if not name.startswith("RECONCILER_RELAY_"):  # the cmc relay is the hop (cmc_relay_host/port)
            monkeypatch.setenv(name, value)
    key = cmc.declare("app@example.com", access={"http_api": False, "smtp": True})
    pending_key = cmc.declare("pending@example.com", access={"http_api": False, "smtp": True})
    cmc.standin.driver.add("app@example.com", key, http_api=False)
    code, out = cmc.cli("verify", "--target", "app@*")
    assert code == 0, out
    settle_dovecot()
    subject = f"cmc {new_key()}"
    assert mail_sandbox.submit("app@example.com", key, "app@example.com", subject).code == 250
    assert relayed(cmc, "app@example.com")
    # Declared but never done in the console: the gateway does not serve it.
    assert mail_sandbox.submit("pending@example.com", pending_key, "pending@example.com", subject).code == 535
    relayhosts = (mail_sandbox.mail_dir / "postfix" / "sender_relayhost_maps").read_text()
    assert f"[127.0.0.1]:{cmc.standin.smtp_port}" in relayhosts
