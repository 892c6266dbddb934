"""The service's SMTP relay: SMTP AUTH as `api_user`/`api_key`, for unlocked users with SMTP access.

It delivers nothing: each accepted message is recorded with the api_user it authenticated as, so
tests can prove which login relayed what (Postfix's sender-dependent authentication end to end).
"""

from __future__ import annotations

import logging
import warnings
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from reconciler_service.store import Store

log = logging.getLogger("reconciler_service.relay")


class RelayHandler:
    """aiosmtpd handler and authenticator backed by the service's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        api_user = self.authenticate(auth_data.login.decode(errors="replace"), auth_data.password.decode())
        if api_user is None:
            log.info("relay: AUTH %s refused", mechanism)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=api_user)

    def authenticate(self, login: str, key: str) -> str | None:
        user = self.store.verify(login, key)
        if user is None or user.attributes.get("locked"):
            return None
        if not user.attributes.get("access", {}).get("smtp"):
            return None
        return user.api_user

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        api_user = session.auth_data if isinstance(session.auth_data, str) else None
        if api_user is None:  # auth_required makes this unreachable; refuse rather than record anonymously
            return "530 5.7.0 Authentication required"
        headers = BytesHeaderParser(policy=default_policy).parsebytes(envelope.original_content or b"")
        subject = headers.get("Subject")
        self.store.add_message(
            api_user, envelope.mail_from, list(envelope.rcpt_tos), subject and str(subject)
        )
        log.info("relay: accepted a message from %s for %d recipient(s)", api_user, len(envelope.rcpt_tos))
        return "250 2.0.0 Message accepted"


def start_relay(store: Store, host: str, port: int) -> Controller:
    handler = RelayHandler(store)
    # aiosmtpd warns on every connection that AUTH without TLS is risky; on loopback it is the point.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning)
    controller = Controller(
        handler,
        hostname=host,
        port=port,
        authenticator=handler,
        auth_required=True,
        auth_require_tls=False,  # loopback only; the gateway in front is what faces the network
    )
    controller.start()
    return controller
