"""Rollback with real daemons, after the new files were already swapped in: the operator's main.cf
is broken when a key change arrives, so the validation that runs after the swap fails. The old
files must come back byte for byte, nothing is reloaded, and the old key keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import run_main
from tests.fixtures.mail import MailSandbox, settle_dovecot

pytestmark = pytest.mark.mail

OLD, NEW = "RollbackKey0001", "RollbackKey0002"
USER = "roll@example.com"


def _render(sandbox: MailSandbox, users: Path, key: str) -> tuple[int, str]:
    (users.parent / "key").write_text(key + "\n")
    result = run_main(
        ["render", "--users", str(users), "--mail-dir", str(sandbox.mail_dir)], env=sandbox.env()
    )
    assert OLD not in result.output and NEW not in result.output
    return result.code, result.output


def _files(mail_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(mail_dir)): (p.read_bytes(), p.stat().st_mode)
        for p in mail_dir.rglob("*")
        if p.is_file()
    }


def test_failed_validation_after_the_swap_restores_the_old_files(
    mail_sandbox: MailSandbox, tmp_path: Path
) -> None:
    sandbox = mail_sandbox
    sandbox.service_user(USER, OLD)
    users = tmp_path / "users"
    users.mkdir()
    (users / f"{USER}.yaml").write_text(
        f"api_user: {USER}\napi_key: {{from_file: ../key}}\nrole: normal\naccess: {{smtp: true}}\n"
    )
    assert _render(sandbox, users, OLD)[0] == 0
    settle_dovecot()
    assert sandbox.submit(USER, OLD, USER, "before").code == 250
    before, pid = _files(sandbox.mail_dir), sandbox.master_pid()

    main_cf = sandbox.postfix_dir / "main.cf"
    good = main_cf.read_text()
    main_cf.write_text(good + "this line is not a parameter\n")
    try:
        sandbox.service_user(USER, NEW)
        code, output = _render(sandbox, users, NEW)
    finally:
        main_cf.write_text(good)
    assert code == 1
    assert "postconf" in output or "postfix" in output  # the failing command is named...
    assert "main.cf" in output  # ...with what it said
    assert _files(sandbox.mail_dir) == before
    assert sandbox.master_pid() == pid

    settle_dovecot()
    # The gateway still serves the old config: Dovecot accepts the old key (the restored hash).
    # (The relay then refuses that message, as the service has the new key; Postfix suspends
    # delivery to it for a while, so this module checks logins at the gateway, not the relay.)
    assert sandbox.submit(USER, OLD, USER, "old key after rollback").code == 250
    assert _render(sandbox, users, NEW)[0] == 0  # with main.cf repaired the change goes through
    settle_dovecot()
    assert sandbox.submit(USER, NEW, USER, "after repair").code == 250
    assert sandbox.submit(USER, OLD, USER, "old key after repair").code == 535
