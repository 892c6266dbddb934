"""Resolving keys for every declared user at once, with located problems and warnings."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.desired import DesiredState, _state, load_user_file, load_users
from reconciler.errors import SecretError, ValidationFailed
from reconciler.secrets import ApiKey, Deadline, check_key, resolve_all
from tests.desired.helpers import run, user_yaml, write_user

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


# --- key files that are not key files: never block, never read, always located -----------------


def _special(tmp_path: Path, kind: str) -> str:
    """A path to a FIFO, a device, a directory or an oversized file, made at test time."""
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "big":
        path.write_text(KEY + "\n" + "#" * 8192)
    else:
        return {"devnull": "/dev/null", "stdin": "/dev/stdin", "zero": "/dev/zero"}[kind]
    return str(path)


SPECIAL_KINDS = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "devnull": "is a character device, not a regular file",
    "zero": "is a character device, not a regular file",
    "directory": "is a directory, not a regular file",
    "big": "is too large to hold one key",
}


@pytest.mark.parametrize("kind", sorted(SPECIAL_KINDS))
def test_a_key_file_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    users = tmp_path / "users"
    path = file_user(users, "a@example.com", _special(tmp_path, kind))
    started = time.monotonic()
    resolved = resolve_all(_unchecked(users), env={})
    assert time.monotonic() - started < 2
    (problem,) = resolved.unusable
    assert (problem.file, problem.line, problem.field) == (str(path), 3, "api_key.from_file")
    assert SPECIAL_KINDS[kind] in problem.message


def _unchecked(users: Path) -> DesiredState:
    """The users without load_users' own key-file check, as if the file changed after validate."""
    results = [load_user_file(p) for p in sorted(users.iterdir())]
    return _state(results)


@pytest.mark.parametrize("kind", sorted(SPECIAL_KINDS))
def test_validate_names_a_special_key_file_it_can_see(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    path = file_user(users, "a@example.com", _special(tmp_path, kind))
    result = run(capsys, "validate", "--users", str(users))
    assert result.code == 1
    assert f"error: {path}:3: api_key.from_file:" in result.err
    assert SPECIAL_KINDS[kind] in result.err


def test_stdin_as_key_file_does_not_wait_for_input(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()  # stdin of a child that never gets any input
    code = (
        "import sys; from pathlib import Path; from reconciler.secrets import resolve_all;"
        "from tests.test_secrets import _unchecked; r = resolve_all(_unchecked(Path(sys.argv[1])), env={});"
        "print(r.unusable[0].message)"
    )
    users = tmp_path / "users"
    file_user(users, "a@example.com", "/dev/stdin")
    done = subprocess.run(
        [sys.executable, "-c", code, str(users)],
        check=False,
        stdin=read_end,
        capture_output=True,
        text=True,
        timeout=20,
    )
    os.close(write_end)
    os.close(read_end)
    assert "is a FIFO (named pipe), not a regular file" in done.stdout, done.stderr


def test_a_resolution_that_hangs_fails_that_user_after_the_deadline(tmp_path: Path) -> None:
    never = threading.Event()
    with Deadline(0.2) as limit:
        started = time.monotonic()
        with pytest.raises(SecretError, match=r"reading the key file did not finish within 0\.2 s"):
            limit.call(never.wait, "reading the key file")
        assert time.monotonic() - started < 1
        assert limit.call(lambda: 42, "the next one") == 42  # a fresh worker serves the rest
    never.set()


def test_an_age_identity_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    from reconciler import agekeys

    fifo = tmp_path / "identity"
    os.mkfifo(fifo)
    with pytest.raises(SecretError, match="not a regular file"):
        agekeys.load_identities({agekeys.IDENTITY_FILE_ENV: str(fifo)})
