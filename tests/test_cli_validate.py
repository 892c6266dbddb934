"""`reconciler validate` and `reconciler schema`, as a user runs them: real files, the real entry
point, and every rule checked by its message and its line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler.cli.validate import schema_text
from reconciler.errors import ExitCode
from tests.desired.helpers import Result, run, user_yaml, write, write_user

REPO = Path(__file__).resolve().parent.parent
NAME = "app@example.com"


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return tmp_path / "users"


def validate(capsys: pytest.CaptureFixture[str], users: Path, *extra: str) -> Result:
    return run(capsys, "validate", "--users", str(users), *extra)


def assert_error(result: Result, where: str, message: str) -> None:
    """`where` is `path:line[:column]`; the line of stderr must start with it and hold `message`."""
    assert result.code == ExitCode.ERROR, result
    lines = [line for line in result.err.splitlines() if line.startswith(f"error: {where}:")]
    assert any(message in line for line in lines), f"no {where}: ...{message}... in:\n{result.err}"


def test_the_example_users_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    result = validate(capsys, REPO / "users", "--table")
    assert result.code == ExitCode.OK, result.err
    assert "4 user(s) valid" in result.out
    assert "billing@example.com normal yes (own) yes no" in " ".join(result.out.split())


def test_a_missing_users_directory_is_an_error(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    result = validate(capsys, users)
    assert_error(result, str(users), "the users directory does not exist")


# (file text, line, column, message): one refusal of the YAML reader each.
YAML_REFUSALS = [
    ("", None, None, "the file is empty"),
    ("# only a comment\n", None, None, "the file is empty"),
    ("- a\n- b\n", 1, 1, "expected a mapping of keys to values, got a list"),
    (user_yaml(NAME) + "---\nrole: admin\n", 13, 1, "only one YAML document per file"),
    ("api_user: &me app@example.com\n", 1, 11, "YAML anchors (&name) are not allowed"),
    ("a: b\nc: *me\n", 2, 4, "YAML aliases (*name) are not allowed"),
    ("base: {role: normal}\n<<: {role: admin}\n", 2, 1, "YAML merge keys (<<) are not allowed"),
    ("role: !!str normal\n", 1, 7, "YAML tags (!name) are not allowed"),
    # The non-specific tag `!` makes a string in YAML; libyaml would still hand over `true`.
    (user_yaml(NAME).replace("locked: false", "locked: ! true"), 11, 9, "YAML tags (!name) are not allowed"),
    ("access: ! {smtp: true}\n", 1, 9, "YAML tags (!name) are not allowed; remove the '!'"),
    (user_yaml(NAME) + "role: admin\n", 13, 1, "duplicate key 'role' (first given on line 4)"),
    ("api_user: [unclosed\n", 2, 1, "not valid YAML"),
]


@pytest.mark.parametrize("case", YAML_REFUSALS)
def test_yaml_refusals_name_file_line_and_column(
    capsys: pytest.CaptureFixture[str], users: Path, case: tuple[str, int | None, int | None, str]
) -> None:
    text, line, column, message = case
    path = write_user(users, NAME, text)
    where = ":".join(str(part) for part in (path, line, column) if part is not None)
    assert_error(validate(capsys, users), where, message)


def test_an_anchor_is_refused_before_it_can_expand(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    # A billion laughs: nine levels of ten aliases each. Refused, not expanded.
    levels = ["a0: &a0 lol"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write_user(users, NAME, "\n".join(levels) + "\n")
    assert_error(validate(capsys, users), f"{path}:1:5", "YAML anchors (&name) are not allowed")


def test_files_over_64_kib_are_refused(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    path = write_user(users, NAME, user_yaml(NAME) + "# padding\n" * 7000)
    assert_error(validate(capsys, users), str(path), "larger than 64 KiB")


def test_non_utf8_is_refused_at_the_bad_byte(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    users.mkdir()
    path = users / f"{NAME}.yaml"
    path.write_bytes(user_yaml(NAME).encode().replace(b"A test user", b"caf\xe9"))
    assert_error(validate(capsys, users), f"{path}:12:17", "not valid UTF-8")


def test_only_yaml_files_belong_in_users(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    write_user(users)
    write(users, "other@example.com.yml", user_yaml("other@example.com"))
    write(users, "upper@example.com.YAML", user_yaml("upper@example.com"))
    write(users, "title@example.com.Yaml", user_yaml("title@example.com"))
    write(users, "shout@example.com.YML", user_yaml("shout@example.com"))
    write(users, "notes.txt", "hello\n")
    write(users, "README.md", "# Users\n")
    write(users, ".gitattributes", "* text\n")
    result = validate(capsys, users)
    for name in (
        "other@example.com.yml",
        "upper@example.com.YAML",
        "title@example.com.Yaml",
        "shout@example.com.YML",
    ):
        assert_error(result, str(users / name), "rename it to .yaml")
    assert_error(result, str(users / "notes.txt"), "only <api_user>.yaml files belong")
    assert "README" not in result.err
    assert ".gitattributes" not in result.err


def test_symlinks_and_subdirectories_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    users = tmp_path / "users"
    real = write_user(tmp_path / "elsewhere", "link@example.com")
    write_user(users)
    (users / "link@example.com.yaml").symlink_to(real)
    write_user(users / "team", "nested@example.com")
    result = validate(capsys, users)
    assert_error(result, str(users / "link@example.com.yaml"), "symlinks are not allowed")
    assert_error(result, str(users / "team"), "subdirectories are not read")


ACCESS = "  http_api: true\n  smtp: true\n  own_data_only: false\n"
# (replace this text of a valid file, by this text, error line:column, field, message)
FIELD_ERRORS = [
    (
        "api_user: app@example.com",
        "api_user: other@example.com",
        "1:11",
        "api_user",
        "must equal the file name",
    ),
    ("role: normal", "role: boss", "4:7", "role", "expected 'admin' or 'normal'"),
    ("operation: false", "operation: yes", "5:12", "operation", "expected true or false, got a string"),
    ("  smtp: true", "  smtp: 1", "8:9", "access.smtp", "expected true or false, got a number"),
    ("locked: false", 'locked: "false"', "11:9", "locked", "expected true or false, got a string"),
    ("locked: false", "lock: true", "11:1", "lock", "unknown key; expected one of: role, operation, access"),
    ("  smtp: true", "  smpt: true", "8:3", "access.smpt", "unknown key; expected one of: http_api, smtp"),
    ("timezone: Asia/Tokyo", "timezone: Asia/Tokio", "10:11", "timezone", "must be an IANA time zone name"),
    (
        "description: A test user",
        'description: "two\\nlines"',
        "12:14",
        "description",
        "must be a single line",
    ),
    (
        "description: A test user",
        "description: " + "x" * 201,
        "12:14",
        "description",
        "must be at most 200 characters",
    ),
    (
        "description: A test user",
        "description: 42",
        "12:14",
        "description",
        "expected a string, got a number",
    ),
    ("  from_env: APP_API_KEY", "  from_env: 2BAD", "3:13", "api_key.from_env", "expected an environment"),
    ("  from_env: APP_API_KEY", "  from_env: A\n  from_file: k", "3:3", "api_key", "give exactly one of"),
    (
        ACCESS,
        ACCESS.replace("api: true", "api: false").replace("only: false", "only: true"),
        "9:18",
        "access.own_data_only",
        "own_data_only: true requires http_api: true",
    ),
    ("role: normal", "", "1:1", "role", "is required but missing"),
    ("role: normal", "role: ~", "4:7", "role", "expected 'admin' or 'normal'"),
    (
        ACCESS,
        ACCESS.replace("smtp: true", "smtp: false") + "smtp_senders: [a@example.com]\n",
        "10:15",
        "smtp_senders",
        "smtp_senders is only allowed with access.smtp: true",
    ),
    (
        ACCESS,
        ACCESS + "smtp_senders: []\n",
        "10:15",
        "smtp_senders",
        "list at least one sender, or leave smtp_senders out for the default [api_user]",
    ),
    (
        ACCESS,
        ACCESS + "smtp_senders: [" + ", ".join(f"s{i}@example.com" for i in range(101)) + "]\n",
        "10:15",
        "smtp_senders",
        "list at most 100 senders",
    ),
    (
        "timezone: Asia/Tokyo",
        "timezone: ~",
        "10:11",
        "timezone",
        "expected a string, got nothing (null); write a value, or leave timezone out",
    ),
    (
        "timezone: Asia/Tokyo",
        "timezone:",
        "10:10",
        "timezone",
        "expected a string, got nothing (null); write",
    ),
    (
        "description: A test user",
        "description: true",
        "12:14",
        "description",
        "expected a string, got a boolean (quote it)",
    ),
    (
        ACCESS,
        ACCESS + "smtp_senders: [app@example.com, bad]\n",
        "10:33",
        "smtp_senders[1]",
        "must be an email",
    ),
]


@pytest.mark.parametrize("case", FIELD_ERRORS)
def test_field_errors_name_line_column_field_and_expectation(
    capsys: pytest.CaptureFixture[str], users: Path, case: tuple[str, str, str, str, str]
) -> None:
    old, new, where, field, message = case
    text = user_yaml(NAME)
    assert old in text
    path = write_user(users, NAME, text.replace(old, new, 1))
    result = validate(capsys, users)
    assert_error(result, f"{path}:{where}", f"{field}: {message}")
    if "(null)" in message:
        assert "quote it" not in result.err  # quoting nothing gives an empty string, not a zone
    assert "should have" not in result.err  # pydantic's own wording never reaches people


@pytest.mark.parametrize(
    ("backend", "required"), [(None, True), ("http-v2", True), ("memory", True), ("mailgun", False)]
)
def test_role_is_required_exactly_when_the_configured_backend_stores_it(
    capsys: pytest.CaptureFixture[str],
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str | None,
    required: bool,
) -> None:
    if backend is not None:
        monkeypatch.setenv("RECONCILER_BACKEND", backend)
    path = write_user(users, NAME, user_yaml(NAME).replace("role: normal\n", "", 1))
    result = validate(capsys, users)
    if required:
        assert_error(result, f"{path}:1:1", "role: is required but missing")
    else:
        assert result.code == ExitCode.OK, result.err


def test_a_literal_key_is_refused_without_repeating_it(
    capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    text = user_yaml(NAME).replace("api_key:\n  from_env: APP_API_KEY", "api_key: Sup3rSecretValue42")
    path = write_user(users, NAME, text)
    for fmt in ("text", "json"):
        result = validate(capsys, users, "--format", fmt)
        assert "Sup3rSecretValue42" not in result.out + result.err
    result = validate(capsys, users)
    assert_error(result, f"{path}:2:10", "api_key: a literal key is not allowed")
    assert_error(result, f"{path}:2:10", "use {from_env: NAME}, {from_file: PATH} or {age: ...}")


@pytest.mark.parametrize("value", ["Xq7SecretKey9", "wrongKey2024abc"])
def test_a_key_in_from_env_is_refused_without_repeating_it(
    capsys: pytest.CaptureFixture[str], users: Path, value: str
) -> None:
    path = write_user(users, NAME, user_yaml(NAME, env=value))
    for fmt in ("text", "json"):
        result = validate(capsys, users, "--format", fmt)
        assert result.code == ExitCode.ERROR
        assert value not in result.out + result.err
    assert_error(
        validate(capsys, users),
        f"{path}:3:13",
        "api_key.from_env: from_env must name an environment variable; this looks like a key itself",
    )


@pytest.mark.parametrize("name", ["BILLING_API_KEY", "K", "key2", "APP2KEY", "billing_key_2", "Path"])
def test_ordinary_variable_names_are_accepted(
    capsys: pytest.CaptureFixture[str], users: Path, name: str
) -> None:
    write_user(users, NAME, user_yaml(NAME, env=name))
    assert validate(capsys, users).code == ExitCode.OK


def test_api_users_are_unique_case_insensitively(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    first = write_user(users, "App@example.com")
    second = write_user(users, "app@example.com")
    assert_error(validate(capsys, users), f"{second}:1", f"the same api_user as {first}")


def test_a_sender_claimed_twice_names_both_files(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    first = write_user(users, "a@example.com")
    text = user_yaml("b@example.com") + "smtp_senders:\n  - b@example.com\n  - A@example.com\n"
    second = write_user(users, "b@example.com", text)
    # a@example.com claims itself by default (line 1); b claims it on line 15.
    assert_error(
        validate(capsys, users), f"{second}:15", f"sender A@example.com is also claimed by {first}:1"
    )


def test_every_error_of_the_run_is_reported_at_once(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    write_user(users, "a@example.com", user_yaml("a@example.com").replace("role: normal", "role: x"))
    write_user(users, "b@example.com", user_yaml("b@example.com").replace("locked: false", "locked: 0"))
    write_user(users, "c@example.com", "")
    write_user(users, "ok@example.com")
    result = validate(capsys, users)
    assert result.code == ExitCode.ERROR
    assert result.err.count("error: ") == 3
    assert "3 error(s) in 3 file(s); nothing was changed." in result.err
    assert result.out == ""


def test_json_format(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    write_user(users)
    ok = validate(capsys, users, "--format", "json")
    assert ok.code == ExitCode.OK
    document = json.loads(ok.out)
    assert document["ok"] is True
    assert document["count"] == 1
    assert document["users"][0]["api_user"] == NAME
    path = write_user(users, NAME, user_yaml(NAME).replace("locked: false", "locked: yes"))
    bad = validate(capsys, users, "--format", "json")
    assert bad.code == ExitCode.ERROR
    problems = json.loads(bad.out)["problems"]
    assert problems == [
        {
            "file": str(path),
            "line": 11,
            "column": 9,
            "field": "locked",
            "message": "expected true or false, got a string",
        }
    ]


def test_github_annotations(
    capsys: pytest.CaptureFixture[str], users: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(users.parent))
    write_user(users, NAME, user_yaml(NAME).replace("role: normal", "role: boss"))
    result = validate(capsys, users)
    expected = f"::error file=users/{NAME}.yaml,line=4,col=7,title=role::expected 'admin' or 'normal'"
    assert expected in result.out.splitlines()


def test_the_table_lists_declared_users(capsys: pytest.CaptureFixture[str], users: Path) -> None:
    write_user(users, "b@example.com")
    write_user(users, "a@example.com")
    result = validate(capsys, users, "--table")
    rows = result.out.splitlines()
    assert rows[0].split() == ["API", "USER", "ROLE", "HTTP", "SMTP", "LOCKED", "SENDERS", "DESCRIPTION"]
    assert rows[1].startswith("a@example.com") and rows[2].startswith("b@example.com")
    assert "--table" not in validate(capsys, users, "--no-table").out
    assert "API USER" not in validate(capsys, users, "--no-table").out


def test_committed_schema_is_generated_from_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "schema")
    assert result.code == ExitCode.OK
    assert result.out == schema_text()
    assert (REPO / "schema" / "user.schema.json").read_text() == result.out, (
        "run: reconciler schema > schema/user.schema.json"
    )
    schema = json.loads(result.out)
    assert schema["$id"] and schema["title"] == "API user"
    assert schema["properties"]["api_user"]["description"]


def test_schema_accepts_the_examples_and_rejects_mistakes() -> None:
    schema = json.loads((REPO / "schema" / "user.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    yaml = YAML(typ="safe")
    for path in sorted((REPO / "users").glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.load(path))), path
        assert path.read_text().startswith("# yaml-language-server: $schema=../schema/user.schema.json\n")
    bad = yaml.load(user_yaml(NAME).replace("role: normal", "role: boss"))
    bad["api_key"] = "literal1234"
    assert {error.path[0] for error in validator.iter_errors(bad)} == {"role", "api_key"}


@pytest.mark.parametrize(
    ("field", "value"), [("api_user", "app@example.com\n"), ("sender", "@example.com\n")]
)
def test_a_trailing_newline_is_not_an_email_address(field: str, value: str) -> None:
    # `$` in EMAIL_RE/SENDER_RE also matches before a final newline; these end up in file names
    # and Postfix map lines, so the whole string must match.
    from pydantic import ValidationError

    from reconciler.model import UserSpec

    data: dict[str, object] = {"api_user": NAME, "api_key": {"from_env": "K"}, "role": "normal"}
    if field == "api_user":
        data["api_user"] = value
    else:
        data |= {"access": {"smtp": True}, "smtp_senders": [value]}
    with pytest.raises(ValidationError):
        UserSpec.model_validate(data)
