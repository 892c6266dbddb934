"""Inputs that used to crash every command (a 2,700-line traceback, no file:line) are located
errors with exit 1, through the real entry point, for `validate` and for `plan` (which must stop
before it contacts the service)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desired.helpers import run, write

HEAD = "api_user: app@example.com\napi_key: {from_env: APP_API_KEY}\nrole: normal\naccess: {smtp: true}\n"
FILE = "app@example.com.yaml"
LONG = "x" * 5000

CASES = {
    "nested lists": (f"extra: {'[' * 500}{']' * 500}\n", "nested more than 20 levels deep"),
    "nested mappings": (f"extra: {'{a: ' * 500}1{'}' * 500}\n", "nested more than 20 levels deep"),
    "nested flow keys": (f"extra: {'{' * 500}{'}' * 500}\n", "mapping keys must be plain names"),
    "a 4,400-digit integer": (f"operation: {'9' * 4400}\n", "this number has too many digits"),
    "a tzdata directory": ("timezone: Europe\n", "timezone: must be an IANA time zone name"),
    "a path as a time zone": ("timezone: ../../etc/passwd\n", "timezone: must be an IANA time zone name"),
    "a NUL in the time zone": ('timezone: "Asia/Tokyo\\0"\n', "timezone: must be an IANA time zone name"),
    "an over-long time zone": (f"timezone: {LONG}\n", "timezone: must be an IANA time zone name"),
    "an over-long description": (f"description: {LONG}\n", "description: must be at most 200 characters"),
    "an over-long sender": (f"smtp_senders: [{LONG}@example.com]\n", "smtp_senders[0]: must be an email"),
    "an over-long key": (f"{'k' * 500}: 1\n", "a key longer than 100 characters"),
}


def _hostile(users: Path, body: str) -> None:
    write(users, FILE, HEAD + body)


@pytest.mark.parametrize(("body", "message"), CASES.values(), ids=list(CASES))
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_hostile_input_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, body: str, message: str
) -> None:
    users = tmp_path / "users"
    _hostile(users, body)
    result = run(capsys, command, "--users", str(users))
    assert result.code == 1
    assert f"{users / FILE}:5:" in result.err  # the hostile value's line
    assert message in result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    assert len(result.err) < 2000  # a message, not a dump of the input


@pytest.mark.parametrize(
    ("ref", "field", "message"),
    [
        ('{from_file: "/run/key\\0x"}', "api_key.from_file", "without control characters"),
        (f"{{from_file: /{LONG}}}", "api_key.from_file", "at most 4096 characters"),
        (f"{{from_env: {'A' * 500}}}", "api_key.from_env", "at most 128 characters"),
        ('{age: "-----BEGIN AGE\\0"}', "api_key.age", "NUL"),
        ("{from_file: ~no-such-user-here/key}", "api_key.from_file", "~no-such-user-here has no home here"),
    ],
)
def test_hostile_key_references_are_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ref: str, field: str, message: str
) -> None:
    users = tmp_path / "users"
    write(users, FILE, f"api_user: app@example.com\napi_key: {ref}\nrole: normal\n")
    result = run(capsys, "plan", "--users", str(users))
    assert result.code == 1
    assert f"{users / FILE}:2:" in result.err
    assert f"{field}: " in result.err and message in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('state_dir: "a\\0b"\n', "state_dir"),
        (f"mail_dir: /{LONG}\n", "mail_dir"),
        ('mail_file_group: "mail\\nroot"\n', "mail_file_group"),
    ],
)
def test_hostile_settings_are_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str
) -> None:
    users = tmp_path / "users"
    write(users, FILE, HEAD)
    write(tmp_path, "reconciler.yaml", text)
    result = run(capsys, "plan", "--users", str(users))
    assert result.code == 1
    assert f"{tmp_path / 'reconciler.yaml'}:1:" in result.err
    assert "Traceback" not in result.err
