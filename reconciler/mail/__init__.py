"""The mail-server side: render Postfix/Dovecot files (pure) and install them (effects)."""
