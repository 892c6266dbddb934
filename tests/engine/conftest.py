"""A users repo in tmp_path wired to a real embedded service, and a CLI runner that fails the test
if any key ever appears in what the CLI printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures.cli import run_main
from tests.fixtures.service import RunningService, new_key


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Repo:
    """users/ files, the keys they point at (as env vars), and the service they are applied to."""

    root: Path
    service: RunningService
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def users(self) -> Path:
        return self.root / "users"

    def var(self, api_user: str) -> str:
        return "KEY_" + "".join(ch if ch.isalnum() else "_" for ch in api_user.upper())

    def write(self, api_user: str, *, key: str | None = None, **fields: Any) -> None:
        data: dict[str, Any] = {
            "api_user": api_user,
            "api_key": {"from_env": self.var(api_user)},
            "role": "normal",
        }
        data.update(fields)
        if key is not None:
            self.keys[api_user] = key
        self.keys.setdefault(api_user, new_key())
        with (self.users / f"{api_user}.yaml").open("w") as handle:
            YAML().dump(data, handle)

    def remove(self, api_user: str) -> None:
        (self.users / f"{api_user}.yaml").unlink()

    def env(self) -> dict[str, str]:
        env = self.service.env() | {self.var(u): k for u, k in self.keys.items()}
        return env | {"NO_COLOR": "1"}

    def secrets(self) -> list[str]:
        return [*self.keys.values(), self.service.admin_key]

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = run_cli(list(args), env if env is not None else self.env(), cwd=self.root)
        for secret in self.secrets():
            assert secret not in result.output, "a key leaked into the CLI output"
        return result

    def live(self) -> dict[str, Any]:
        with self.service.client() as client:
            return {u.api_user: u for u in client.list_users()}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> Result:
    with _chdir(cwd):
        result = run_main(args, env=env)
    return Result(result.code, result.stdout, result.stderr)


class _chdir:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, Path.cwd()

    def __enter__(self) -> None:
        import os

        os.chdir(self.path)

    def __exit__(self, *exc: object) -> None:
        import os

        os.chdir(self.old)


@pytest.fixture
def repo(tmp_path: Path, service: RunningService) -> Repo:
    """A repo whose only user is the admin the reconciler authenticates as."""
    (tmp_path / "users").mkdir()
    r = Repo(tmp_path, service)
    r.write(service.admin_user, key=service.admin_key, role="admin", access={"http_api": True})
    return r
