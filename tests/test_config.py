"""Settings from reconciler.yaml beside users/, with RECONCILER_* variables on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import DEFAULT_API_URL, ENVIRONMENT, load_settings
from reconciler.errors import ValidationFailed
from tests.desired.helpers import run, write


def problems_of(users: Path, env: dict[str, str]) -> list[tuple[str, int | None, str | None, str]]:
    with pytest.raises(ValidationFailed) as failed:
        load_settings(users, env)
    return [(p.file, p.line, p.field, p.message) for p in failed.value.problems]


def test_nothing_configured_means_embedded_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "users", env={})
    assert settings.api_url == DEFAULT_API_URL
    assert settings.api_user is None


def test_file_then_environment(tmp_path: Path) -> None:
    write(
        tmp_path, "reconciler.yaml", "api_url: https://mail.example.com/api/v2\nretries: 2\nmax_deletes: 5\n"
    )
    env = {
        "RECONCILER_RETRIES": "7",
        "RECONCILER_ALLOW_INSECURE_HTTP": "true",
        "RECONCILER_API_KEY": "k1abcdefgh",
    }
    settings = load_settings(tmp_path / "users", env)
    assert settings.api_url == "https://mail.example.com/api/v2"
    assert (settings.retries, settings.max_deletes, settings.allow_insecure_http) == (7, 5, True)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k1abcdefgh"


def test_file_errors_name_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "retries: 50\nmax_deltes: 1\nallow_insecure_http: 'yes'\n")
    problems = problems_of(tmp_path / "users", {})
    assert [p[:3] for p in problems] == [
        (str(path), 1, "retries"),
        (str(path), 2, "max_deltes"),
        (str(path), 3, "allow_insecure_http"),
    ]
    assert problems[0][3] == "Input should be less than or equal to 20"
    assert problems[1][3].startswith("unknown key; expected one of: api_url, api_user")
    assert problems[2][3] == "expected true or false, got a string"


def test_a_literal_key_in_the_file_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "api_url: http://127.0.0.1:1/api/v2\napi_key: Secret123abc\n")
    problems = problems_of(tmp_path / "users", {})
    assert problems == [(str(path), 2, "api_key", problems[0][3])]
    assert "Secret123abc" not in problems[0][3] and "RECONCILER_API_KEY" in problems[0][3]


def test_a_fingerprint_secret_in_the_file_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "retries: 2\nfingerprint_secret: hunter2hunter2\n")
    with pytest.raises(ValidationFailed) as caught:
        load_settings(tmp_path / "users", {})
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 2, "fingerprint_secret")
    assert "RECONCILER_FINGERPRINT_SECRET" in problem.message
    assert "hunter2" not in str(problem)


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    env = {"RECONCILER_CONNECT_TIMEOUT": "-1", "RECONCILER_ALLOW_INSECURE_HTTP": "maybe"}
    assert sorted(problems_of(tmp_path / "users", env)) == [
        (ENVIRONMENT, None, "RECONCILER_ALLOW_INSECURE_HTTP", "expected true or false (or 1/0, yes/no)"),
        (ENVIRONMENT, None, "RECONCILER_CONNECT_TIMEOUT", "Input should be greater than 0"),
    ]


def test_the_file_gets_the_same_refusals_as_user_files(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "base: &b 1\n")
    assert problems_of(tmp_path / "users", {}) == [
        (str(path), 1, None, "YAML anchors (&name) are not allowed; write the value out")
    ]


@pytest.mark.parametrize("value", ["Wrongkey€123", "short1", "onlyletters", "has space 123", "k1" * 65])
def test_an_invalid_api_key_setting_is_refused_without_repeating_it(tmp_path: Path, value: str) -> None:
    problems = problems_of(tmp_path / "users", {"RECONCILER_API_KEY": value})
    assert [p[:3] for p in problems] == [(ENVIRONMENT, None, "RECONCILER_API_KEY")]
    message = problems[0][3]
    assert message.startswith("RECONCILER_API_KEY is not a valid key: it must be 8-128 characters")
    assert value not in message


def test_an_invalid_api_key_setting_fails_the_cli_without_echo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "users").mkdir()
    monkeypatch.setenv("RECONCILER_API_USER", "admin@example.com")
    monkeypatch.setenv("RECONCILER_API_KEY", "Wrongkey€123")
    result = run(capsys, "live", "--users", str(tmp_path / "users"))
    assert result.code == 1
    assert "RECONCILER_API_KEY is not a valid key" in result.err
    assert "Wrongkey" not in result.out + result.err
    assert "Traceback" not in result.err and "UnicodeEncodeError" not in result.err


def test_api_key_ref_is_kept_unresolved_until_asked_for(tmp_path: Path) -> None:
    from reconciler.config import service_api_key
    from reconciler.errors import ConfigError

    path = write(tmp_path, "reconciler.yaml", "retries: 2\napi_key_ref:\n  from_file: keys/own.key\n")
    settings = load_settings(tmp_path / "users", {})  # the file does not exist yet: no error
    assert settings.api_key is None and settings.api_key_ref is not None
    with pytest.raises(ConfigError) as caught:
        service_api_key(settings)
    assert str(caught.value).startswith(
        f"{path}:3: api_key_ref: key file {tmp_path}/keys/own.key does not exist"
    )
    write(tmp_path / "keys", "own.key", "Own1key2abc\n")
    key = service_api_key(settings)
    assert key is not None and key.get_secret_value() == "Own1key2abc"


def test_reconciler_api_key_wins_over_api_key_ref(tmp_path: Path) -> None:
    from reconciler.config import Settings, service_api_key

    write(tmp_path, "reconciler.yaml", "api_key_ref: {from_env: OWN_KEY}\n")
    env = {"RECONCILER_API_KEY": "Env1key2abc", "OWN_KEY": "Ref1key2abc"}
    key = service_api_key(load_settings(tmp_path / "users", env))
    assert key is not None and key.get_secret_value() == "Env1key2abc"
    key = service_api_key(load_settings(tmp_path / "users", {"OWN_KEY": "Ref1key2abc"}))
    assert key is not None and key.get_secret_value() == "Ref1key2abc"
    assert service_api_key(Settings()) is None


def test_a_key_written_as_api_key_ref_from_env_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "api_key_ref:\n  from_env: Xq7SecretKey9\n")
    problems = problems_of(tmp_path / "users", {})
    assert [p[:3] for p in problems] == [(str(path), 2, "api_key_ref.from_env")]
    assert "Xq7SecretKey9" not in problems[0][3] and "looks like a key" in problems[0][3]
