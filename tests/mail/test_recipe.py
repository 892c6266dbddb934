"""docs/mail.md's recipe, run as written: copies of the stock Debian /etc/postfix and /etc/dovecot
become a gateway by the documented commands only, and a message goes through it with STARTTLS and
SMTP AUTH to the embedded service's relay.

The test adds only what keeps the copies off the system's instances (their own queue, data, run and
log directories, loopback ports, no port 25); everything a gateway needs comes from the page.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest

from reconciler.mail.commands import read_pid, wait_for_exit
from reconciler_service.server import EmbeddedService, ServiceOptions, free_port
from tests.fixtures.mail import settle_dovecot

pytestmark = pytest.mark.mail

DOC = Path(__file__).resolve().parents[2] / "docs" / "mail.md"
HOST = "127.0.0.1"
USER, KEY = "app@example.com", "AppKey0001"


def recipe() -> str:
    """The ```sh block of docs/mail.md whose first line is `# recipe: gateway`."""
    blocks = re.findall(r"^```sh\n(# recipe: gateway\n.*?)^```$", DOC.read_text(), re.M | re.S)
    assert len(blocks) == 1, "docs/mail.md must hold exactly one `# recipe: gateway` block"
    return str(blocks[0])


def _isolate(root: Path, port: int) -> None:
    """Sandbox-only settings on the copies (not part of the recipe: a real gateway keeps Debian's)."""
    pf, dc = root / "postfix", root / "dovecot"
    for name in ("spool", "data", "logs", "run", "state"):
        (root / name).mkdir()
    shutil.chown(root / "data", "postfix", "postfix")
    subprocess.run(
        [
            "postconf", "-c", str(pf), "-e",
            f"queue_directory={root}/spool", f"data_directory={root}/data",
            f"maillog_file_prefixes={root}/logs", f"maillog_file={root}/logs/postfix.log",
            "inet_interfaces=127.0.0.1", "inet_protocols=ipv4", "myhostname=gateway.test",
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(["postconf", "-c", str(pf), "-MX", "smtp/inet"], check=True)  # no port 25
    with (dc / "dovecot.conf").open("a") as conf:
        conf.write(
            f"base_dir = {root}/run\nstate_dir = {root}/state\ninstance_name = recipe-{port}\n"
            f"log_path = {root}/logs/dovecot.log\nlisten = 127.0.0.1\n"
        )


@pytest.fixture
def sandbox() -> Iterator[Path]:
    if shutil.which("postfix") is None or shutil.which("dovecot") is None or os.geteuid() != 0:
        pytest.skip("needs root and the postfix/dovecot-core packages (make mail-packages)")
    root = Path(tempfile.mkdtemp(prefix="reconciler-recipe-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        _stop(root)
        shutil.rmtree(root, ignore_errors=True)


def _stop(root: Path) -> None:
    for pid_file, stop in (
        (root / "spool/pid/master.pid", ["postfix", "-c", str(root / "postfix"), "stop"]),
        (root / "run/master.pid", ["doveadm", "-c", str(root / "dovecot/dovecot.conf"), "stop"]),
    ):
        pid = read_pid(pid_file)
        if pid is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(stop, capture_output=True, timeout=30, check=False)
            wait_for_exit(pid, 15)


def test_the_documented_recipe_builds_a_working_gateway_from_stock_configs(sandbox: Path) -> None:
    root = sandbox
    shutil.copytree("/etc/postfix", root / "postfix")
    shutil.copytree("/etc/dovecot", root / "dovecot")
    stock_relayhosts = (root / "postfix/main.cf").read_text().count("\nrelayhost =")
    port = free_port(HOST)
    _isolate(root, port)
    service = EmbeddedService(root / "service.db", ServiceOptions(port=0, smtp_port=0)).start()
    try:
        assert service.smtp_port is not None
        service.store.create(USER, {"role": "normal", "access": {"smtp": True}}, KEY, {})
        users = root / "repo/users"
        users.mkdir(parents=True)
        (users / f"{USER}.yaml").write_text(
            f"api_user: {USER}\napi_key: {{from_env: APP_KEY}}\nrole: normal\naccess: {{smtp: true}}\n"
        )
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PF": str(root / "postfix"),
            "DC": str(root / "dovecot"),
            "MAIL": str(root / "mail"),
            "USERS": str(users),
            "SUBMISSION": f"{HOST}:{port}",
            "RELAY": f"[{HOST}]:{service.smtp_port}",
            "RELAY_TLS": "may",  # the stand-in relay is on loopback and offers no TLS (docs/mail.md)
            "CERT": str(root / "tls.pem"),
            "KEY": str(root / "tls.key"),
            "APP_KEY": KEY,
            "RECONCILER_RELAY_HOST": HOST,
            "RECONCILER_RELAY_PORT": str(service.smtp_port),
            "RECONCILER_POSTFIX_CONFIG_DIR": str(root / "postfix"),
        }
        _self_signed(root)
        # The daemons the recipe starts inherit its stdout: a file, never a pipe we would wait on.
        with (root / "logs/recipe.out").open("w") as out:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", recipe()],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        output = (root / "logs/recipe.out").read_text()
        assert done.returncode == 0, output
        assert KEY not in output

        main_cf = (root / "postfix/main.cf").read_text()
        assert stock_relayhosts == 1 and main_cf.count("\nrelayhost =") == 1  # replaced, not appended
        assert "\ndefault_transport = smtp" in main_cf
        penalty_off = not (root / "run/anvil-auth-penalty").exists()
        settle_dovecot()

        # Applications on other hosts: no AUTH before STARTTLS.
        with smtplib.SMTP(HOST, port, timeout=15) as client:
            client.ehlo("app.test")
            assert not client.has_extn("auth")
        # Three applications behind this one address still hold a wrong key; the right key still
        # works at once. (Three failures did not trip the penalty here even with it on: what proves
        # the setting is that the penalty socket is gone, checked below.)
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(lambda _: _login(port, "WrongKey001"), range(3))) == [535] * 3
        started = time.monotonic()
        _send_with_tls(port)
        assert time.monotonic() - started < 5, "the right key waited out an auth penalty"
        assert penalty_off
        relayed = _relayed(service, "through the recipe")
        assert relayed is not None, (root / "logs/postfix.log").read_text()[-3000:]
        assert relayed["api_user"] == USER
    finally:
        _stop(root)
        service.stop()


def _self_signed(root: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=gateway.test", "-keyout", str(root / "tls.key"), "-out", str(root / "tls.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the self-signed test cert
    return context


def _login(port: int, key: str) -> int:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.ehlo("app.test")
        client.starttls(context=_tls())
        client.ehlo("app.test")
        try:
            return client.login(USER, key)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def _send_with_tls(port: int) -> None:
    context = _tls()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = USER, "rcpt@example.org", "through the recipe"
    message.set_content("hello")
    with smtplib.SMTP(HOST, port, timeout=15) as client:
        client.ehlo("app.test")
        client.starttls(context=context)
        client.ehlo("app.test")
        client.login(USER, KEY)
        client.send_message(message)


def _relayed(service: EmbeddedService, subject: str) -> dict[str, object] | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for message in service.store.messages():
            if message["subject"] == subject:
                return message
        time.sleep(0.1)
    return None
