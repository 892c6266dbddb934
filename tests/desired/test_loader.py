"""`load_users` and `DesiredState` as the engine uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import desired
from reconciler.desired import load_mapping_with_lines, load_users
from reconciler.errors import ValidationFailed
from tests.desired.helpers import user_yaml, write, write_user


def test_state_is_sorted_and_knows_files_and_lines(tmp_path: Path) -> None:
    users = tmp_path / "users"
    write_user(users, "b@example.com")
    write_user(users, "A@example.com")
    state = load_users(users)
    assert [u.api_user for u in state.users] == ["A@example.com", "b@example.com"]
    assert state.files["b@example.com"] == users / "b@example.com.yaml"
    assert state.line("b@example.com", "api_key") == 2
    assert state.line("b@example.com", "api_key.from_env") == 3
    assert state.line("b@example.com", "smtp_senders") is None


def test_digest_moves_with_any_byte_or_name(tmp_path: Path) -> None:
    users = tmp_path / "users"
    path = write_user(users)
    before = load_users(users).digest
    assert load_users(users).digest == before
    path.write_text(user_yaml() + "# a comment\n")
    changed = load_users(users).digest
    assert changed != before
    write_user(users, "other@example.com")
    assert load_users(users).digest != changed


def test_missing_or_empty_directory_is_an_empty_state(tmp_path: Path) -> None:
    # The engine's guard, not the loader, refuses "no users" (exit 3).
    assert load_users(tmp_path / "missing").users == ()
    (tmp_path / "empty").mkdir()
    assert load_users(tmp_path / "empty").users == ()


def test_the_parallel_path_gives_the_same_state_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    for i in range(30):
        write_user(users, f"u{i:02d}@example.com")
    sequential = load_users(users)
    monkeypatch.setattr(desired, "PARALLEL_THRESHOLD", 2)
    assert load_users(users) == sequential
    write_user(users, "u29@example.com", user_yaml("u29@example.com").replace("role: normal", "role: x"))
    with pytest.raises(ValidationFailed) as failed:
        load_users(users)
    assert [(p.line, p.field) for p in failed.value.problems] == [(4, "role")]


def test_load_mapping_with_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "reconciler.yaml", "# settings\napi_url: http://x\nretries: 2\n")
    assert load_mapping_with_lines(path) == (
        {"api_url": "http://x", "retries": 2},
        {"api_url": 2, "retries": 3},
    )
    write(tmp_path, "reconciler.yaml", "a: 1\na: 2\n")
    with pytest.raises(ValidationFailed) as failed:
        load_mapping_with_lines(path)
    assert (failed.value.problems[0].line, failed.value.problems[0].message) == (
        2,
        "duplicate key 'a' (first given on line 1)",
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("x: yes", "yes"),
        ("x: on", "on"),
        ("x: 'true'", "true"),
        ("x: True", True),
        ("x: ~", None),
        ("x: 0x1F", 31),
        ("x: 1.5", 1.5),
        ("x: 010", 10),
    ],
)
def test_scalars_follow_yaml_1_2(tmp_path: Path, text: str, value: object) -> None:
    data, _ = load_mapping_with_lines(write(tmp_path, "f.yaml", text + "\n"))
    assert data == {"x": value}


@pytest.mark.parametrize(
    "text", ["x: 1_000", "x: 0b101", "x: -0x1F", "x: 2001-12-14", "x: =", "x: <<", "1: x", "~: x"]
)
def test_scalars_other_yaml_readers_take_for_numbers_or_dates_are_refused(tmp_path: Path, text: str) -> None:
    """ruamel.yaml reads `1_000` as 1000 and `2001-12-14` as a date; we would read strings. Rather
    than mean something else than another reader would, such a value must be quoted."""
    with pytest.raises(ValidationFailed) as failed:
        load_mapping_with_lines(write(tmp_path, "f.yaml", text + "\n"))
    (problem,) = failed.value.problems
    assert (problem.line, problem.column) in ((1, 4), (1, 1))
    assert "quote it" in problem.message
