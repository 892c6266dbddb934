"""Settings from reconciler.yaml beside users/, with RECONCILER_* variables on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import DEFAULT_API_URL, ENVIRONMENT, load_settings
from reconciler.errors import ValidationFailed
from tests.desired.helpers import write


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
    env = {"RECONCILER_RETRIES": "7", "RECONCILER_ALLOW_INSECURE_HTTP": "true", "RECONCILER_API_KEY": "k1"}
    settings = load_settings(tmp_path / "users", env)
    assert settings.api_url == "https://mail.example.com/api/v2"
    assert (settings.retries, settings.max_deletes, settings.allow_insecure_http) == (7, 5, True)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k1"


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
