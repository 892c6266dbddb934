"""A users/ directory in tmp_path and an in-process memory account: the workflows' decisions,
driven directly (no CLI, no HTTP), with a reporter that records what it was told."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from ruamel.yaml import YAML

from reconciler.backend.base import Capabilities
from reconciler.backend.memory import FULL, MemoryAccount, MemoryBackend
from reconciler.config import Settings
from reconciler.executor import Outcome
from reconciler.mail import MailReport
from reconciler.plan import FINGERPRINT_ANNOTATION, KEY_UPDATED_ANNOTATION, Plan
from reconciler.secrets import ApiKey
from reconciler.workflows.context import Run
from reconciler.workflows.keys import fingerprints_of, key_fingerprint_secret

ADMIN = "admin@example.com"
ADMIN_KEY = "AdminKey2026x"
ADMIN_SPEC: dict[str, Any] = {"role": "admin", "access": {"http_api": True}}


class Recorder:
    """A Reporter that keeps what it was told; approves without asking."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []
        self.seen: list[Outcome] = []
        self.still_pending: Plan | None = None

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None:
        self.infos.append(message)

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        return True

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[Callable[[Outcome], None]]:
        yield lambda _outcome: None

    def outcomes(self, outcomes: list[Outcome]) -> None:
        self.seen = list(outcomes)

    def pending(self, plan: Plan) -> None:
        self.still_pending = plan

    def mail(self, report: MailReport | None) -> None:
        pass


@dataclass
class Desk:
    """users/ on disk, the keys they point at (environment), and the memory account."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    account: MemoryAccount = field(default_factory=MemoryAccount)
    capabilities: Capabilities = FULL
    admin_key: str = ADMIN_KEY

    @property
    def users(self) -> Path:
        return self.root / "users"

    def write(self, api_user: str, **fields: Any) -> Path:
        """users/<api_user>.yaml; its key comes from KEY_<name> (the admin's: RECONCILER_API_KEY)."""
        var = "RECONCILER_API_KEY" if api_user == ADMIN else _var(api_user)
        data = {"api_user": api_user, "api_key": {"from_env": var}, "role": "normal", **fields}
        self.users.mkdir(parents=True, exist_ok=True)
        path = self.users / f"{api_user}.yaml"
        with path.open("w") as out:
            YAML().dump(data, out)
        return path

    def key(self, api_user: str, value: str) -> None:
        self.monkeypatch.setenv(_var(api_user), value)

    def seed(self, api_user: str, key: str, **attributes: Any) -> None:
        """A live user whose key the reconciler set (its fingerprint and key time recorded)."""
        self.account.seed(api_user, {"role": "normal", **attributes}, ApiKey(key))
        record = self.account.users[api_user.lower()]
        secret = key_fingerprint_secret(self.settings())
        assert secret is not None  # settings() holds one, independent of every key
        record.annotations = {
            FINGERPRINT_ANNOTATION: fingerprints_of({api_user: ApiKey(key)}, secret)[api_user.lower()],
            KEY_UPDATED_ANNOTATION: record.key_updated_at.isoformat(),
        }

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "api_user": ADMIN,
            "api_key": SecretStr(self.admin_key),
            "backend": "memory",
            "fingerprint_secret": SecretStr("workflow-tests-fingerprint-secret-0123456789"),
        }
        return Settings(**(values | overrides))

    def run(self, reporter: Recorder | None = None, **overrides: Any) -> Run:
        backend = MemoryBackend(
            self.account, self.capabilities, api_user=ADMIN, api_key=ApiKey(self.admin_key)
        )
        return Run(
            self.settings(**overrides), self.users, reporter or Recorder(), backend_opener=lambda _s: backend
        )

    def live(self) -> dict[str, Any]:
        return {u.api_user: u for u in MemoryBackend(self.account).users.list()}


def _var(api_user: str) -> str:
    return "KEY_" + "".join(ch if ch.isalnum() else "_" for ch in api_user.upper())


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """The reconciler's own admin, declared and live, and nothing else."""
    for name in (
        "RECONCILER_API_URL",
        "RECONCILER_API_USER",
        "RECONCILER_BACKEND",
        "RECONCILER_FINGERPRINT_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECONCILER_API_KEY", ADMIN_KEY)
    made = Desk(tmp_path, monkeypatch)
    made.write(ADMIN, **ADMIN_SPEC)
    made.seed(ADMIN, ADMIN_KEY, **ADMIN_SPEC)
    return made
