"""A gateway that never swaps in a broken file and lives with a real main.cf (issue 13, rows 1-5),
with real Postfix + Dovecot relaying to the embedded service."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.mail import default_templates_dir
from reconciler.run.audit import AuditLog
from tests.fixtures.cli import run_main
from tests.fixtures.mail import MailSandbox, settle_dovecot

pytestmark = pytest.mark.mail

KEYS = {"alice@example.com": "AliceKey0001", "bob@example.com": "BobKey0002"}


class Gateway:
    """A users repo (keys in files beside it) rendered into the sandbox through the CLI."""

    def __init__(self, root: Path, sandbox: MailSandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.users = root / "users"
        self.users.mkdir()
        for name, key in KEYS.items():
            self.declare(name, key)

    def declare(self, name: str, key: str, *, smtp: bool = True) -> None:
        (self.root / f"{name}.key").write_text(key + "\n")
        (self.users / f"{name}.yaml").write_text(
            f"api_user: {name}\napi_key: {{from_file: ../{name}.key}}\nrole: normal\n"
            f"access: {{smtp: {'true' if smtp else 'false'}}}\n"
        )

    def render(self, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = run_main(["render", "--users", str(self.users)], env=self.sandbox.env() | (env or {}))
        for key in KEYS.values():
            assert key not in result.output
        return result.code, result.output

    def mail_files(self) -> dict[str, bytes]:
        mail_dir = self.sandbox.mail_dir
        return {str(p.relative_to(mail_dir)): p.read_bytes() for p in mail_dir.rglob("*") if p.is_file()}

    def last_audit(self) -> dict[str, object]:
        entries = [e for e in AuditLog(self.root / ".reconciler", {}).tail(20) if e.get("action") == "mail"]
        return entries[-1]

    def serves(self, name: str) -> bool:
        return self.sandbox.submit(name, KEYS[name], name, f"serves {name} {os.urandom(4).hex()}").code == 250


@pytest.fixture(scope="module")
def gateway(mail_sandbox: MailSandbox, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    for name, key in KEYS.items():
        mail_sandbox.service_user(name, key)
    gateway = Gateway(tmp_path_factory.mktemp("gateway"), mail_sandbox)
    code, output = gateway.render()
    assert code == 0, output
    settle_dovecot()
    return gateway


# --- row 1: a template typo never goes live -------------------------------------------------------

TYPOS = {
    "dovecot/users.passwd.j2": (
        "{{ entry.api_user }}:{{ entry.hash }}",
        "{{ entry.api_user }}{{ entry.hash }}",
    ),
    "postfix/sasl_passwd.j2": (
        "{{ row.api_user }}:{{ row.api_key.reveal() }}",
        "{{ row.api_user }}{{ row.api_key.reveal() }}",
    ),
    "postfix/sender_login_maps.j2": (
        "{{ row.sender }} {{ row.api_user }}",
        "{{ row.sender }}{{ row.api_user }}",
    ),
    "postfix/sender_relayhost_maps.j2": (
        "{{ row.sender }} {{ next_hop }}",
        "{{ row.sender }} {{ next_hop }}:25",
    ),
}


@pytest.mark.parametrize("template", sorted(TYPOS), ids=lambda t: t.split("/")[1].removesuffix(".j2"))
def test_template_typo_is_refused_and_nothing_is_swapped(
    gateway: Gateway, tmp_path: Path, template: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    good, typo = TYPOS[template]
    text = (templates / template).read_text()
    assert good in text
    (templates / template).write_text(text.replace(good, typo))
    before = gateway.mail_files()

    code, output = gateway.render({"RECONCILER_TEMPLATES_DIR": str(templates)})

    assert code == 1, output
    assert "the rendered mail files are malformed" in output
    assert template.removesuffix(".j2") + ": line " in output
    assert gateway.mail_files() == before
    assert gateway.last_audit()["outcome"] == "failed"
    assert gateway.serves("alice@example.com")


# --- row 3: a warning about the operator's main.cf is passed on, not fatal -------------------------


@pytest.fixture
def duplicate_relayhost(gateway: Gateway) -> Iterator[None]:
    """Debian's stock main.cf already has `relayhost =`; an operator who appends the snippet gets a
    second one, and every postfix command warns `overriding earlier entry`."""
    main_cf = gateway.sandbox.postfix_dir / "main.cf"
    original = main_cf.read_text()
    main_cf.write_text("relayhost =\n" + original)
    yield
    main_cf.write_text(original)


@pytest.mark.usefixtures("duplicate_relayhost")
def test_unrelated_main_cf_warning_is_passed_on_and_the_render_succeeds(gateway: Gateway) -> None:
    gateway.declare("carol@example.com", "CarolKey0003")
    gateway.sandbox.service_user("carol@example.com", "CarolKey0003")
    KEYS["carol@example.com"] = "CarolKey0003"
    try:
        code, output = gateway.render()
        assert code == 0, output
        assert "warning: " in output
        assert "overriding earlier entry: relayhost=" in output
        assert "postfix/sasl_passwd" in output  # it was written
        settle_dovecot()
        assert gateway.serves("carol@example.com")
    finally:
        (gateway.users / "carol@example.com.yaml").unlink()
        assert gateway.render()[0] == 0
        del KEYS["carol@example.com"]


# --- row 5: a hung reload is killed with every process it started -----------------------------------

HUNG_POSTFIX = """#!/bin/sh
# The real postfix, except that `reload` hangs in a child that ignores the hangup and TERM, as the
# postfix-script + postlog pair did.
for arg in "$@"; do
  if [ "$arg" = reload ]; then
    trap '' HUP TERM
    sh -c "trap '' HUP TERM; echo \\$\\$ > {pids}/child; exec sleep 300" &
    echo $$ > {pids}/parent
    sleep 300
  fi
done
exec {postfix} "$@"
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead; only its parent (here init) has yet to reap it


def test_hung_reload_is_killed_with_its_children_and_rolled_back(gateway: Gateway, tmp_path: Path) -> None:
    fake = tmp_path / "postfix"
    postfix = shutil.which("postfix")
    assert postfix is not None
    fake.write_text(HUNG_POSTFIX.format(pids=tmp_path, postfix=postfix))
    fake.chmod(0o755)
    gateway.declare("bob@example.com", KEYS["bob@example.com"], smtp=False)
    before = gateway.mail_files()
    try:
        code, output = gateway.render(
            {"RECONCILER_POSTFIX_COMMAND": str(fake), "RECONCILER_MAIL_COMMAND_TIMEOUT": "6"}
        )
        assert code == 1, output
        assert "reload` timed out: no result after 6 s; killed it and its children" in output
        assert "the previous files were put back" in output
        pids = [int((tmp_path / name).read_text()) for name in ("parent", "child")]
        assert not [pid for pid in pids if _alive(pid)], "a process of the hung reload survived"
        audit = gateway.last_audit()
        assert audit["outcome"] == "rolled_back"
        assert "reload` timed out" in str(audit["detail"])
        assert {k: v for k, v in gateway.mail_files().items() if not k.startswith("state/")} == {
            k: v for k, v in before.items() if not k.startswith("state/")
        }
        settle_dovecot()
        assert gateway.serves("bob@example.com")
    finally:
        gateway.declare("bob@example.com", KEYS["bob@example.com"])
        assert gateway.render()[0] == 0


# --- row 2: smoke checks probe a canary and the relay, and a refusal rolls back ---------------------


def test_key_change_is_smoke_checked_with_a_canary_and_the_relay(gateway: Gateway) -> None:
    alice, new_key = "alice@example.com", "AliceKey0042"
    gateway.sandbox.service_user(alice, new_key)
    gateway.declare(alice, new_key)
    try:
        code, output = gateway.render()
        assert code == 0, output
        assert f"smoke check passed: Dovecot auth OK for {alice}" in output
        assert "smoke check passed: Dovecot auth OK for bob@example.com" in output  # the canary
        assert f"accepts the key of {alice}" in output
    finally:
        gateway.sandbox.service_user(alice, KEYS[alice])
        gateway.declare(alice, KEYS[alice])
        assert gateway.render()[0] == 0
        settle_dovecot()


def test_a_key_the_relay_refuses_is_rolled_back(gateway: Gateway) -> None:
    """users/ has a new key the service never got (rendered before the apply): the gateway would
    accept it and the relay refuse every message, so the render rolls back to the old key."""
    alice = "alice@example.com"
    gateway.declare(alice, "AliceKey0666")
    before = gateway.mail_files()
    try:
        code, output = gateway.render()
        assert code == 1, output
        assert f"refused the key of {alice} (535)" in output
        assert "the previous files were put back" in output
        assert "AliceKey0666" not in output
        after = gateway.mail_files()
        assert {k: after[k] for k in after if k.startswith(("dovecot/", "postfix/"))} == {
            k: before[k] for k in before if k.startswith(("dovecot/", "postfix/"))
        }
        settle_dovecot()
        assert gateway.serves(alice)
    finally:
        gateway.declare(alice, KEYS[alice])
