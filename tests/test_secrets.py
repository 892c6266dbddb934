"""Resolving keys for every declared user at once, with located problems and warnings."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from reconciler.desired import load_users
from reconciler.errors import SecretError, ValidationFailed
from reconciler.secrets import ApiKey, check_key, resolve_all
from tests.desired.helpers import user_yaml, write_user

KEY = "Abcdef123456"


def file_user(users: Path, name: str, key_path: str) -> Path:
    text = user_yaml(name).replace(f"from_env: {'APP_API_KEY'}", f"from_file: {key_path}")
    return write_user(users, name, text)


def test_env_keys_resolve_and_missing_ones_are_located(tmp_path: Path) -> None:
    users = tmp_path / "users"
    write_user(users, "a@example.com")
    path = write_user(users, "b@example.com", user_yaml("b@example.com", env="B_KEY"))
    resolved = resolve_all(load_users(users), env={"APP_API_KEY": KEY})
    assert resolved.keys["a@example.com"] == ApiKey(KEY)
    assert [(p.file, p.line, p.field, p.message) for p in resolved.missing] == [
        (str(path), 3, "api_key.from_env", "environment variable B_KEY is not set")
    ]
    with pytest.raises(ValidationFailed):
        resolved.raise_if_missing()


def test_only_the_named_users_are_resolved(tmp_path: Path) -> None:
    users = tmp_path / "users"
    write_user(users, "a@example.com")
    write_user(users, "b@example.com", user_yaml("b@example.com", env="B_KEY"))
    resolved = resolve_all(load_users(users), env={"APP_API_KEY": KEY}, names=["A@example.com"])
    assert list(resolved.keys) == ["a@example.com"]
    assert resolved.missing == ()


def test_a_bad_key_is_reported_without_its_value(tmp_path: Path) -> None:
    users = tmp_path / "users"
    write_user(users)
    resolved = resolve_all(load_users(users), env={"APP_API_KEY": "onlyletters"})
    assert "onlyletters" not in str(resolved.missing)
    assert "must be 8-128 characters" in resolved.missing[0].message


def test_relative_key_files_start_at_the_yaml_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "a.key").write_text(KEY + "\n")
    (secrets / "a.key").chmod(0o600)
    (secrets / "b.key").write_text(KEY)
    (secrets / "b.key").chmod(0o644)
    file_user(users, "a@example.com", "../secrets/a.key")
    b_path = file_user(users, "b@example.com", "../secrets/b.key")
    monkeypatch.chdir("/")
    resolved = resolve_all(load_users(users), env={})
    assert resolved.keys == {"a@example.com": ApiKey(KEY), "b@example.com": ApiKey(KEY)}
    assert [(w.file, w.line, w.message) for w in resolved.warnings] == [
        (str(b_path), 3, "the key file is readable by group or others; chmod 600 it")
    ]


def test_an_unreadable_key_file_is_located(tmp_path: Path) -> None:
    users = tmp_path / "users"
    path = file_user(users, "a@example.com", "missing.key")
    resolved = resolve_all(load_users(users), env={})
    (problem,) = resolved.missing
    assert (problem.file, problem.line) == (str(path), 3)
    assert problem.message.startswith("key file") and problem.message.endswith("missing.key does not exist")
    assert resolved.unusable == ()  # absent, not wrong: a plan may skip its key check


def test_keys_redact_themselves() -> None:
    key = check_key(KEY, "test")
    assert KEY not in repr(key) + str(key) + f"{key}"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(SecretError) as bad:
        check_key("short1", "env X")
    assert "short1" not in str(bad.value)


def test_a_key_shaped_variable_name_never_reaches_a_message(tmp_path: Path) -> None:
    # KeyRef refuses it (see test_cli_validate); a reference built around validation is still safe.
    from reconciler.model import KeyRef
    from reconciler.secrets import resolve

    ref = KeyRef.model_construct(from_env="Xq7SecretKey9", from_file=None, age=None)
    with pytest.raises(SecretError) as caught:
        resolve(ref, tmp_path, env={})
    assert "Xq7SecretKey9" not in str(caught.value)
    assert str(caught.value) == "environment variable named in from_env is not set"
    with pytest.raises(SecretError) as caught:
        resolve(ref, tmp_path, env={"Xq7SecretKey9": "short"})
    assert "Xq7SecretKey9" not in str(caught.value)


def test_ordinary_variable_names_are_named_in_messages(tmp_path: Path) -> None:
    from reconciler.model import KeyRef
    from reconciler.secrets import resolve

    with pytest.raises(SecretError, match=r"^environment variable BILLING_API_KEY is not set$"):
        resolve(KeyRef(from_env="BILLING_API_KEY"), tmp_path, env={})
