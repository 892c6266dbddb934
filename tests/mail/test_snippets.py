"""The operator snippets are complete and are exactly what docs/mail.md shows. That a config built
from them works is proven by tests/fixtures/mail.py, which uses them unchanged (`pytest -m mail`)."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.config import Settings
from reconciler.mail import default_templates_dir, render_snippets, template_environment

DOC = Path(__file__).resolve().parents[2] / "docs/mail.md"
MAIL_DIR = Path("/etc/reconciler/mail")


def _snippets(**kwargs: Path) -> dict[str, str]:
    settings = Settings(relay_host="relay.example.net", relay_port=2525)
    return render_snippets(MAIL_DIR, settings, template_environment(default_templates_dir()), **kwargs)


def _config_lines(text: str) -> list[str]:
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def _doc_blocks(heading: str) -> str:
    """The fenced blocks from the bold `heading` to the next bold heading of "Include once"."""
    section = DOC.read_text().split("## Include once", 1)[1].split("\n## ", 1)[0]
    part = section.split(f"**{heading}**", 1)[1].split("\n**", 1)[0]
    return "\n".join(re.findall(r"```\n(.*?)```", part, flags=re.DOTALL))


def test_postfix_snippet_is_what_the_doc_shows() -> None:
    lines = _config_lines(_snippets()["postfix-main.cf"])
    assert "smtpd_sasl_path = private/auth" in lines
    assert lines == _config_lines(_doc_blocks("main.cf"))


def test_dovecot_snippet_is_what_the_doc_shows() -> None:
    text = _snippets()["dovecot-passdb.conf"]
    lines = _config_lines(text)
    assert "service auth {" in lines
    assert "unix_listener auth-client {" in lines
    assert "unix_listener /var/spool/postfix/private/auth {" in lines
    assert lines == _config_lines(_doc_blocks("dovecot.conf"))
    # Balanced braces: a block the doc shows half of would not parse.
    assert text.count("{") == text.count("}")


def test_the_postfix_auth_socket_follows_the_queue_directory() -> None:
    snippets = _snippets(postfix_queue_dir=Path("/srv/pf-spool"))
    assert "unix_listener /srv/pf-spool/private/auth {" in _config_lines(snippets["dovecot-passdb.conf"])
    # smtpd looks the socket up relative to its queue directory.
    assert "smtpd_sasl_path = private/auth" in _config_lines(snippets["postfix-main.cf"])


def test_every_relay_off_loopback_requires_tls_mailgun_included() -> None:
    env = template_environment(default_templates_dir())
    mailgun = _config_lines(render_snippets(MAIL_DIR, Settings(backend="mailgun"), env)["postfix-main.cf"])
    assert "smtp_tls_security_level = encrypt" in mailgun
    assert "relayhost = [smtp.mailgun.org]:587" in mailgun
    # Issue 20: not only Mailgun's; only a relay on loopback is the exception (docs/mail.md).
    assert "smtp_tls_security_level = encrypt" in _config_lines(_snippets()["postfix-main.cf"])
