"""A Customers Mail Cloud stand-in on loopback, a users/ repository pointed at it, and helpers to
run the CLI and the console workflows against it."""

from __future__ import annotations

import io
import secrets
import string
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.config import load_settings
from reconciler.workflows.context import Run, SilentReporter
from reconciler.workflows.verify import ConsoleRun, open_run
from reconciler_service.standins.cmc import StandIn

ADMIN = "admin@example.com"


def new_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "k1" + "".join(secrets.choice(alphabet) for _ in range(22))


@dataclass
class Cmc:
    standin: StandIn
    root: Path
    monkeypatch: pytest.MonkeyPatch
    keys: dict[str, str] = field(default_factory=dict)  # env var -> key

    @property
    def users(self) -> Path:
        return self.root / "users"

    def declare(self, api_user: str, **attrs: Any) -> str:
        """Write users/<api_user>.yaml (keys from the environment) and return its key."""
        env = "KEY_" + api_user.split("@", 1)[0].upper().replace("-", "_")
        key = self.keys.get(env) or new_key()
        self.set_key(env, key)
        access = attrs.pop("access", {"http_api": True, "smtp": True})
        lines = [
            f"api_user: {api_user}",
            "api_key:",
            f"  from_env: {env}",
            f"role: {attrs.pop('role', 'normal')}",
        ]
        lines += ["access:", *(f"  {k}: {str(v).lower()}" for k, v in access.items())]
        lines += [f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in attrs.items()]
        (self.users / f"{api_user}.yaml").write_text("\n".join(lines) + "\n")
        return key

    def set_key(self, env: str, key: str) -> None:
        self.keys[env] = key
        self.monkeypatch.setenv(env, key)

    def remove(self, api_user: str) -> None:
        (self.users / f"{api_user}.yaml").unlink()

    def cli(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(out):
            code = main(list(args))
        text = out.getvalue()
        for key in self.keys.values():
            assert key not in text, "a key leaked into the CLI's output"
        return code, text

    def run(self, command: str = "test") -> ConsoleRun:
        return open_run(Run(load_settings(self.users), self.users, SilentReporter()), command)


@pytest.fixture
def cmc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cmc]:
    with StandIn() as standin:
        (tmp_path / "users").mkdir()
        helper = Cmc(standin, tmp_path, monkeypatch)
        admin_key = new_key()
        standin.driver.add(ADMIN, admin_key, role="admin", smtp=False)
        for name, value in standin.env(ADMIN).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RECONCILER_API_KEY", admin_key)
        # Independent of every key (docs/security.md): without one, key changes cannot be told apart.
        monkeypatch.setenv("RECONCILER_FINGERPRINT_SECRET", "cmc-tests-fingerprint-secret-0123456789")
        monkeypatch.setenv("RECONCILER_CMC_AUDIT_INTERVAL_HOURS", "0")
        monkeypatch.setenv("RECONCILER_CMC_PROBE_RATE", "100")
        monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
        helper.keys["RECONCILER_API_KEY"] = admin_key
        monkeypatch.chdir(tmp_path)
        yield helper
