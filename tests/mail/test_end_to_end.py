"""End to end with real daemons: users/ -> `reconciler render` -> Postfix + Dovecot -> service relay."""

from __future__ import annotations

import grp
import re
import shutil
from pathlib import Path

import pytest

from reconciler.mail import PASSWD, SASL_PASSWD, STATE, default_templates_dir
from tests.fixtures.cli import run_main
from tests.fixtures.mail import MailSandbox, settle_dovecot

pytestmark = pytest.mark.mail

KEYS = {
    "alice@example.com": "AliceKey0001",
    "bob@example.com": "BobKey0002",
    "carol@example.com": "CarolKey0003",
    "dave@example.com": "DaveKey0004",
}
NEW_ALICE_KEY = "AliceKey0099"

BASELINE = {
    "alice@example.com": "access: {smtp: true}\nsmtp_senders: [alice@example.com, '@alice.example.com']\n",
    "bob@example.com": "access: {http_api: true, smtp: false}\n",
    "carol@example.com": "access: {smtp: true}\nlocked: true\n",
}


class World:
    """The users repo on disk (users/ + keys/ outside it) and the CLI run against the sandbox."""

    def __init__(self, root: Path, sandbox: MailSandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.users = root / "users"

    def write(self, users: dict[str, str], keys: dict[str, str]) -> None:
        shutil.rmtree(self.users, ignore_errors=True)
        self.users.mkdir(parents=True)
        (self.root / "keys").mkdir(exist_ok=True)
        for name, body in users.items():
            (self.root / "keys" / f"{name}.key").write_text(keys[name] + "\n")
            header = f"api_user: {name}\napi_key: {{from_file: ../keys/{name}.key}}\nrole: normal\n"
            (self.users / f"{name}.yaml").write_text(header + body)

    def render(self, *args: str) -> tuple[int, str]:
        result = run_main(
            ["render", "--users", str(self.users), "--mail-dir", str(self.sandbox.mail_dir), *args],
            env=self.sandbox.env(),
        )
        for key in (*KEYS.values(), NEW_ALICE_KEY):
            assert key not in result.output  # no key in any output, success or failure
        return result.code, result.output

    def mail_files(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.sandbox.mail_dir)): p.read_bytes()
            for p in self.sandbox.mail_dir.rglob("*")
            if p.is_file()
        }


@pytest.fixture(scope="module")
def world(mail_sandbox: MailSandbox, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Baseline: alice may send; bob has no SMTP; carol is locked; dave exists only on the service."""
    for name, key in KEYS.items():
        mail_sandbox.service_user(name, key, smtp=name != "bob@example.com")
    world = World(tmp_path_factory.mktemp("repo"), mail_sandbox)
    world.write(BASELINE, KEYS)
    code, output = world.render()
    assert code == 0, output
    settle_dovecot()
    return world


def _reloads(sandbox: MailSandbox) -> int:
    return len(re.findall(r"reload -- version", sandbox.postfix_log()))


def test_smtp_user_is_relayed_as_its_api_user(world: World) -> None:
    sandbox = world.sandbox
    for sender in ("alice@example.com", "billing@alice.example.com"):
        subject = f"ok-{sender}"
        assert sandbox.submit("alice@example.com", KEYS["alice@example.com"], sender, subject).code == 250
        relayed = sandbox.relayed(subject)
        assert relayed is not None, "the service relay never got the message"
        assert relayed["api_user"] == "alice@example.com"
        assert relayed["mail_from"] == sender


@pytest.mark.parametrize(
    ("login", "key"),
    [
        ("alice@example.com", "WrongKey0001"),  # wrong key
        ("carol@example.com", KEYS["carol@example.com"]),  # locked
        ("bob@example.com", KEYS["bob@example.com"]),  # no SMTP access
        ("dave@example.com", KEYS["dave@example.com"]),  # absent from users/
    ],
    ids=["wrong-key", "locked", "no-smtp-access", "absent"],
)
def test_refused_logins_get_535(world: World, login: str, key: str) -> None:
    assert world.sandbox.submit(login, key, login, f"refused-{login}").code == 535


def test_sender_outside_smtp_senders_is_rejected(world: World) -> None:
    result = world.sandbox.submit("alice@example.com", KEYS["alice@example.com"], "bob@example.com", "spoof")
    assert result.code == 553
    assert "not owned by user alice@example.com" in result.message


def test_only_sasl_passwd_holds_keys_with_restrictive_modes(world: World) -> None:
    files = world.mail_files()
    for name, content in files.items():
        for key in KEYS.values():
            if name != SASL_PASSWD:
                assert key.encode() not in content, f"a key leaked into {name}"
    assert KEYS["alice@example.com"].encode() in files[SASL_PASSWD]
    for locked_out in ("bob@example.com", "carol@example.com", "dave@example.com"):
        assert all(locked_out.encode() not in content for content in files.values())
    mail_dir = world.sandbox.mail_dir
    assert (mail_dir / SASL_PASSWD).stat().st_mode & 0o777 == 0o600
    assert (mail_dir / STATE).stat().st_mode & 0o777 == 0o600
    passwd = (mail_dir / PASSWD).stat()
    assert (passwd.st_mode & 0o777, passwd.st_uid, passwd.st_gid) == (
        0o640,
        0,
        grp.getgrnam("dovecot").gr_gid,
    )


def test_noop_render_writes_and_reloads_nothing(world: World) -> None:
    before_files, before_reloads, pid = (
        world.mail_files(),
        _reloads(world.sandbox),
        world.sandbox.master_pid(),
    )
    code, output = world.render()
    assert (code, "up to date" in output, "nothing reloaded" in output) == (0, True, True)
    assert world.mail_files() == before_files
    assert (_reloads(world.sandbox), world.sandbox.master_pid()) == (before_reloads, pid)
    assert world.render("--check")[0] == 0


def test_check_reports_pending_changes_and_writes_nothing(world: World) -> None:
    before = world.mail_files()
    world.write({**BASELINE, "bob@example.com": "access: {smtp: true}\n"}, KEYS)
    try:
        code, output = world.render("--check")
        assert code == 2, output
        assert "would change: postfix/sasl_passwd" in output
        assert world.mail_files() == before
    finally:
        world.write(BASELINE, KEYS)


def test_key_change_old_key_fails_new_key_works(world: World) -> None:
    sandbox, alice = world.sandbox, "alice@example.com"
    sandbox.service_user(alice, NEW_ALICE_KEY)
    world.write(BASELINE, {**KEYS, alice: NEW_ALICE_KEY})
    try:
        code, output = world.render()
        assert code == 0, output
        assert "1 key(s) hashed" in output
        assert f"Dovecot auth OK for {alice}" in output
        settle_dovecot()
        assert sandbox.submit(alice, KEYS[alice], alice, "old-key").code == 535
        assert sandbox.submit(alice, NEW_ALICE_KEY, alice, "new-key").code == 250
        relayed = sandbox.relayed("new-key")
        assert relayed is not None
        assert relayed["api_user"] == alice
    finally:
        sandbox.service_user(alice, KEYS[alice])
        world.write(BASELINE, KEYS)
        assert world.render()[0] == 0
        settle_dovecot()


def test_template_that_breaks_postfix_leaves_old_config_serving(world: World, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    # A map line without a value: Postfix would silently ignore it, so the installer must not.
    (templates / "postfix/sender_login_maps.j2").write_text(
        "{% for row in rows %}{{ row.sender }}\n{% endfor %}"
    )
    world.write({**BASELINE, "bob@example.com": "access: {smtp: true}\n"}, KEYS)
    before, reloads = world.mail_files(), _reloads(world.sandbox)
    try:
        code, output = world.render("--templates", str(templates))
        assert code == 1
        # The structural check refuses it before postmap or a daemon sees it.
        assert "postfix/sender_login_maps: line 2: expected `sender value` (2 fields), found 1" in output
        assert world.mail_files() == before
        assert _reloads(world.sandbox) == reloads
        alice = "alice@example.com"
        assert world.sandbox.submit(alice, KEYS[alice], alice, "still-serving").code == 250
        assert (
            world.sandbox.submit("bob@example.com", KEYS["bob@example.com"], "bob@example.com", "x").code
            == 535
        )
    finally:
        world.write(BASELINE, KEYS)
