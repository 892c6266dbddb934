"""The whole job with real parts: users/ -> `reconciler reconcile` -> the embedded service (HTTP) and
the gateway (Postfix + Dovecot) -> the service's SMTP relay. The relay accepts only what the service
knows, so a relayed message proves both halves were applied."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.engine.conftest import Result, run_cli
from tests.fixtures.mail import MailSandbox, settle_dovecot
from tests.fixtures.service import new_key

pytestmark = pytest.mark.mail

ADMIN = "ops@example.com"


class Repo:
    def __init__(self, root: Path, sandbox: MailSandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.users = root / "users"
        self.users.mkdir()
        self.keys: dict[str, str] = {ADMIN: new_key()}
        sandbox.service.ensure_admin(ADMIN, self.keys[ADMIN])
        self.write(ADMIN, role="admin", access={"http_api": True})

    def var(self, name: str) -> str:
        return "KEY_" + re.sub(r"\W", "_", name.upper())

    def write(self, name: str, **fields: object) -> None:
        self.keys.setdefault(name, new_key())
        data = {"api_user": name, "api_key": {"from_env": self.var(name)}, "role": "normal", **fields}
        with (self.users / f"{name}.yaml").open("w") as handle:
            YAML().dump(data, handle)

    def reconcile(self) -> Result:
        env = self.sandbox.env() | {
            "RECONCILER_API_URL": self.sandbox.service.base_url,
            "RECONCILER_API_USER": ADMIN,
            "RECONCILER_API_KEY": self.keys[ADMIN],
            "RECONCILER_FINGERPRINT_SECRET": "e2e-fingerprint-secret-0123456789abcdef",
            "NO_COLOR": "1",
        }
        env |= {self.var(name): key for name, key in self.keys.items()}
        result = run_cli(["reconcile", "--auto-approve"], env, cwd=self.root)
        assert not any(key in result.output for key in self.keys.values()), "a key leaked"
        settle_dovecot()
        return result

    def submit(self, name: str, key: str | None = None) -> int:
        subject = f"e2e {name} {new_key()}"
        code = self.sandbox.submit(name, key or self.keys[name], name, subject).code
        if code == 250:
            relayed = self.sandbox.relayed(subject)
            assert relayed is not None and relayed["api_user"] == name
        return code


@pytest.fixture(scope="module")
def repo(mail_sandbox: MailSandbox, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo(tmp_path_factory.mktemp("e2e"), mail_sandbox)
    repo.write("app@example.com", access={"smtp": True})
    repo.write("locked@example.com", access={"smtp": True}, locked=True)
    repo.write("api-only@example.com", access={"http_api": True})
    result = repo.reconcile()
    assert result.code == 0, result.output
    return repo


def test_reconcile_lets_each_smtp_user_send_as_itself_and_nobody_else(repo: Repo) -> None:
    assert repo.submit("app@example.com") == 250
    assert repo.submit("locked@example.com") == 535
    assert repo.submit("api-only@example.com") == 535
    assert repo.submit("app@example.com", key=new_key()) == 535


def test_noop_reconcile_changes_and_reloads_nothing(repo: Repo) -> None:
    pid, log = repo.sandbox.master_pid(), repo.sandbox.postfix_log()
    result = repo.reconcile()
    assert result.code == 0
    assert "No changes to the service." in result.stdout
    assert "up to date" in result.stdout and "nothing reloaded" in result.stdout
    assert repo.sandbox.master_pid() == pid
    assert repo.sandbox.postfix_log().count("reload") == log.count("reload")


def test_key_change_reaches_service_and_gateway_together(repo: Repo) -> None:
    old = repo.keys["app@example.com"]
    repo.keys["app@example.com"] = new_key()
    result = repo.reconcile()
    assert result.code == 0, result.output
    assert "(sensitive) will change  # declared key changed" in result.stdout
    assert repo.submit("app@example.com", key=old) == 535
    assert repo.submit("app@example.com") == 250


def test_unlock_and_delete_take_effect_on_the_gateway(repo: Repo) -> None:
    repo.write("locked@example.com", access={"smtp": True}, locked=False)
    assert repo.reconcile().code == 0
    assert repo.submit("locked@example.com") == 250
    (repo.users / "app@example.com.yaml").unlink()
    result = repo.reconcile()
    assert result.code == 0, result.output
    assert "- delete app@example.com" in result.stdout
    assert repo.submit("app@example.com") == 535


def test_a_key_change_the_service_refuses_keeps_the_old_key_on_the_gateway(repo: Repo) -> None:
    """The service answers 500 to bob's key change and accepts carol's: bob's old key keeps working
    through the gateway (the relay still knows only that one), carol's new key works at once."""
    for name in ("bob@example.com", "carol@example.com"):
        repo.write(name, access={"smtp": True})
    assert repo.reconcile().code == 0
    old_bob = repo.keys["bob@example.com"]
    repo.keys["bob@example.com"] = new_bob = new_key()
    repo.keys["carol@example.com"] = new_key()
    repo.sandbox.service.faults.fail_writes_for.add("bob@example.com")
    try:
        result = repo.reconcile()
    finally:
        repo.sandbox.service.faults.fail_writes_for.clear()
    assert result.code == 1, result.output
    assert "the service did not accept the change of bob@example.com" in result.stderr
    assert repo.submit("bob@example.com", key=old_bob) == 250
    assert repo.submit("bob@example.com", key=new_bob) == 535
    assert repo.submit("carol@example.com") == 250
    # The next run, with the service healthy again, converges both halves.
    assert repo.reconcile().code == 0
    assert repo.submit("bob@example.com") == 250
    assert repo.submit("bob@example.com", key=old_bob) == 535


def test_a_key_change_the_service_silently_ignores_keeps_the_old_key_on_the_gateway(repo: Repo) -> None:
    """The service answers 200 but keeps dora's old key: only the plan after apply sees it, and the
    gateway must not start using a key the relay does not know."""
    repo.write("dora@example.com", access={"smtp": True})
    assert repo.reconcile().code == 0
    old = repo.keys["dora@example.com"]
    repo.keys["dora@example.com"] = new_key()
    repo.sandbox.service.faults.ignore_writes_for.add("dora@example.com")
    try:
        result = repo.reconcile()
    finally:
        repo.sandbox.service.faults.ignore_writes_for.clear()
    assert result.code == 1, result.output
    assert "the service did not accept the change of dora@example.com" in result.stderr
    assert repo.submit("dora@example.com", key=old) == 250
