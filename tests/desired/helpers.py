"""Shared by the tests of the desired state, secrets, config and `reconciler validate`: real files
in a temporary directory and the real entry point."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import main

# Line numbers matter in these tests: api_user is on line 1, api_key on 2, from_env on 3, ...
VALID_USER = """\
api_user: {name}
api_key:
  from_env: {env}
role: normal
operation: false
access:
  http_api: true
  smtp: true
  own_data_only: false
timezone: Asia/Tokyo
locked: false
description: A test user
"""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def user_yaml(name: str = "app@example.com", env: str = "APP_API_KEY") -> str:
    return VALID_USER.format(name=name, env=env)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_user(users: Path, name: str = "app@example.com", text: str | None = None) -> Path:
    return write(users, f"{name}.yaml", user_yaml(name) if text is None else text)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run `reconciler ARGV` through the entry point, which returns the exit code."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
