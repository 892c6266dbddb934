"""The `mailgun` backend: Mailgun's SMTP credentials as API users (docs/mailgun.md). `client.py` is
the transport (the Credentials API), `backend.py` adapts it to the seam, `rules.py` holds the pure
checks (sending domains, key length)."""

from reconciler.backend.mailgun.backend import CAPABILITIES, FACTORY, MailgunBackend

__all__ = ["CAPABILITIES", "FACTORY", "MailgunBackend"]
