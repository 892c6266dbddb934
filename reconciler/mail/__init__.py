"""The mail-server side: render Postfix/Dovecot files (pure) and install them (effects).

The engine calls `reflect` (render + install) and `preview` (for `plan`); the lower-level pieces are
exported for tests and benchmarks.
"""

from __future__ import annotations

from reconciler.mail.install import AuthProbe, CommandFailed, InstallReport, SmokeFailed, install
from reconciler.mail.reflect import MailReport, keys_for_mail, preview, reflect
from reconciler.mail.render import (
    PASSWD,
    SASL_PASSWD,
    SENDER_LOGIN_MAPS,
    SENDER_RELAYHOST_MAPS,
    STATE,
    HashEntry,
    Rendered,
    RenderedFile,
    default_templates_dir,
    render_mail,
    render_snippets,
    template_environment,
    templates_dir_for,
)

__all__ = [
    "PASSWD",
    "SASL_PASSWD",
    "SENDER_LOGIN_MAPS",
    "SENDER_RELAYHOST_MAPS",
    "STATE",
    "AuthProbe",
    "CommandFailed",
    "HashEntry",
    "InstallReport",
    "MailReport",
    "Rendered",
    "RenderedFile",
    "SmokeFailed",
    "default_templates_dir",
    "install",
    "keys_for_mail",
    "preview",
    "reflect",
    "render_mail",
    "render_snippets",
    "template_environment",
    "templates_dir_for",
]
