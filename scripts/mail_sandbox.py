"""A throw-away mail gateway for `make demo`: Postfix + Dovecot in a temp dir, never the system's.

    app --AUTH--> Postfix smtpd 127.0.0.1:<submission> --SASL--> Dovecot (passwd-file in <root>/mail)
                  Postfix smtp --per-sender AUTH (sasl_passwd)--> the embedded service's relay

    python scripts/mail_sandbox.py up ROOT --relay-port N --submission-port N   # prints RECONCILER_* lines
    python scripts/mail_sandbox.py send --port N --login USER --key-env VAR --subject TEXT
    python scripts/mail_sandbox.py down ROOT

Needs root and the Debian postfix and dovecot-core packages. The operator's part of the config is
written as docs/mail.md tells an operator to (the snippets from reconciler/templates/snippets/);
nothing binds port 25, both daemons are stopped and waited for by `down`. The same recipe as the
test fixture tests/fixtures/mail.py (shared/recipes/mail-sandbox.md), without pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path

from reconciler.config import Settings
from reconciler.mail import default_templates_dir, reflect, render_snippets, template_environment
from reconciler.mail.install import run, wait_for_exit

HOST = "127.0.0.1"
# Every line chroot = n (Debian's stock master.cf says y); no `smtp inet` line, so nothing binds :25.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def settings_for(root: Path, relay_port: int, submission_port: int) -> Settings:
    return Settings(
        mail_dir=str(root / "mail"),
        relay_host=HOST,
        relay_port=relay_port,
        postfix_config_dir=str(root / "postfix"),
        dovecot_config=str(root / "dovecot/dovecot.conf"),
        submission_port=submission_port,
    )


def environment(settings: Settings) -> dict[str, str]:
    """The RECONCILER_* variables that point `reconciler render/reconcile` at this gateway."""
    return {
        "RECONCILER_MAIL_DIR": str(settings.mail_dir),
        "RECONCILER_RELAY_HOST": settings.relay_host,
        "RECONCILER_RELAY_PORT": str(settings.relay_port),
        "RECONCILER_POSTFIX_CONFIG_DIR": str(settings.postfix_config_dir),
        "RECONCILER_DOVECOT_CONFIG": str(settings.dovecot_config),
        "RECONCILER_SUBMISSION_PORT": str(settings.submission_port),
    }


def main_cf(root: Path, snippet: str, *, extra: str = "") -> str:
    """The sandbox's main.cf: the operator's snippet on top of a loopback-only, no-local-delivery
    base (also used by the test fixture tests/fixtures/mail.py, which adds `extra` lines)."""
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/pf-spool
data_directory = {root}/pf-data
mail_owner = postfix
setgid_group = postdrop
myhostname = gateway.localdomain
mydomain = localdomain
myorigin = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled in sandbox
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.1/32
maillog_file_prefixes = {root}/logs
maillog_file = {root}/logs/postfix.log
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtp_sasl_mechanism_filter = plain, login
smtp_dns_support_level = disabled
{extra}{snippet}"""


def master_cf(port: int) -> str:
    return (
        f"{HOST}:{port} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix-sandbox/submission\n"
        "  -o smtpd_sasl_auth_enable=yes\n" + MASTER_SERVICES
    )


def dovecot_conf(root: Path, snippet: str, *, instance: str = "reconciler-demo", extra: str = "") -> str:
    return f"""\
base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
instance_name = {instance}-{root.name}
protocols = none
listen = {HOST}
log_path = {root}/logs/dovecot.log
info_log_path = {root}/logs/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
{extra}{snippet}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)


def configure(
    root: Path,
    settings: Settings,
    *,
    postfix_extra: str = "",
    dovecot_extra: str = "",
    instance: str = "reconciler-demo",
) -> None:
    """Write the sandbox's Postfix and Dovecot configuration under `root` (the test fixture adds its
    `*_extra` lines: no anti-abuse pauses, no auth penalty)."""
    templates = template_environment(default_templates_dir())
    snippets = render_snippets(root / "mail", settings, templates, postfix_queue_dir=root / "pf-spool")
    for name in ("logs", "pf-spool", "dovecot/run", "dovecot/state"):
        (root / name).mkdir(parents=True, exist_ok=True)
    # Dovecot (started first) creates Postfix's auth socket in the queue's private/, as `postfix
    # check` would make it; the data directory belongs to the mail owner.
    (root / "pf-spool/private").mkdir(mode=0o700, exist_ok=True)
    shutil.chown(root / "pf-spool/private", "postfix", "root")
    (root / "pf-data").mkdir(exist_ok=True)
    shutil.chown(root / "pf-data", "postfix", "postfix")
    assert settings.submission_port is not None
    _write(root / "postfix/main.cf", main_cf(root, snippets["postfix-main.cf"], extra=postfix_extra))
    _write(root / "postfix/master.cf", master_cf(settings.submission_port))
    dovecot = dovecot_conf(root, snippets["dovecot-passdb.conf"], instance=instance, extra=dovecot_extra)
    _write(root / "dovecot/dovecot.conf", dovecot)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    with socket.socket() as sock, contextlib.suppress(OSError):
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0
    return False


def up(root: Path, relay_port: int, submission_port: int) -> dict[str, str]:
    """Configure and start the gateway; its mail dir starts with no SMTP users."""
    os.umask(0o022)  # the daemons' own users read the config and traverse the queue directories
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the postfix and dovecot users must reach the sockets and the passwd-file
    settings = settings_for(root, relay_port, submission_port)
    configure(root, settings)
    reflect([], {}, settings, reload=False, check=False)  # the maps main.cf names must exist
    with (root / "logs/dovecot-start.out").open("w") as out:  # never a pipe: the daemon keeps it open
        subprocess.run(["dovecot", "-c", str(settings.dovecot_config)], stdout=out, stderr=out, check=True)
    wait_for((root / "pf-spool/private/auth").exists, "the Dovecot auth socket for Postfix")
    run(["postfix", "-c", str(root / "postfix"), "start"], tty=True)
    wait_for(lambda: port_open(submission_port), "Postfix to listen")
    return environment(settings)


def down(root: Path) -> None:
    """Stop both daemons (and wait until they are gone); quiet when they are not running."""
    with contextlib.suppress(Exception):
        pid = int((root / "pf-spool/pid/master.pid").read_text().split()[0])
        run(["postfix", "-c", str(root / "postfix"), "stop"], tty=True)
        wait_for_exit(pid, 15)
    with contextlib.suppress(Exception):
        pid = int((root / "dovecot/run/master.pid").read_text().split()[0])
        run(["doveadm", "-c", str(root / "dovecot/dovecot.conf"), "stop"])
        wait_for_exit(pid, 15)


def send(port: int, login: str, key: str, subject: str) -> None:
    """One message with SMTP AUTH as `login`, from `login`, as an application would send it."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = login, "rcpt@example.org", subject
    message.set_content("Sent through the demo gateway.")
    with smtplib.SMTP(HOST, port, timeout=15) as client:
        client.ehlo("reconciler-demo")
        client.login(login, key)
        client.send_message(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up")
    start.add_argument("root", type=Path)
    start.add_argument("--relay-port", type=int, required=True)
    start.add_argument("--submission-port", type=int, required=True)
    stop = commands.add_parser("down")
    stop.add_argument("root", type=Path)
    mail = commands.add_parser("send")
    mail.add_argument("--port", type=int, required=True)
    mail.add_argument("--login", required=True)
    mail.add_argument("--key-env", required=True, help="variable holding the key (never on argv)")
    mail.add_argument("--subject", required=True)
    args = parser.parse_args(argv)
    if args.command == "up":
        for name, value in up(args.root.resolve(), args.relay_port, args.submission_port).items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.command == "down":
        down(args.root.resolve())
    else:
        send(args.port, args.login, os.environ[args.key_env], args.subject)
    return 0


if __name__ == "__main__":
    sys.exit(main())
