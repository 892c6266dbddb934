"""The conformance kit (reconciler.testing) against the built-in backends: `http-v2` through the
embedded service on loopback (with its fault injection), `memory` in-process, and `memory`
narrowed to a backend without annotations or `operation`, its annotations kept in a local state
store (reconciler/backend/stateful.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.backend.base import ALL_FIELDS, Backend
from reconciler.backend.http import HttpBackend
from reconciler.backend.http.client import PAGE_ROWS, ServiceClient
from reconciler.backend.memory import FULL, MemoryAccount, MemoryBackend
from reconciler.backend.stateful import StatefulBackend
from reconciler.run.store import LocalStore
from reconciler.testing import BackendConformance, Harness
from reconciler_service.faults import Fault
from tests.fixtures.service import RunningService, start


class HttpHarness(Harness):
    page_size = PAGE_ROWS

    def __init__(self, db: Path) -> None:
        self.service: RunningService = start(db, smtp=False)

    def open(self, *, deadline: float | None = None) -> Backend:
        client = ServiceClient(
            self.service.base_url,
            self.service.admin_user,
            SecretStr(self.service.admin_key),
            backoff_factor=0.01,
            change_deadline=deadline or 30.0,
        )
        return HttpBackend(client)

    def lose_next_answer(self, api_user: str) -> bool:
        self.service.faults.drop_next_write_for.add(api_user.lower())
        return True

    def throttle_next(self, count: int, retry_after: int) -> bool:
        self.service.faults.retry_after_s = retry_after
        self.service.faults.next_faults.extend([Fault.THROTTLE] * count)
        return True

    def unavailable_next(self, count: int) -> bool:
        self.service.faults.next_faults.extend([Fault.UNAVAILABLE] * count)
        return True

    def close(self) -> None:
        self.service.stop()


class MemoryHarness(Harness):
    """In-process: nothing is lost or throttled on the way, so those cases are skipped."""

    def __init__(self) -> None:
        self.account = MemoryAccount()

    def open(self, *, deadline: float | None = None) -> Backend:
        return MemoryBackend(self.account)


class StatefulMemoryHarness(MemoryHarness):
    """A backend that stores neither annotations nor `operation`: the fingerprints live in a
    local state store, and `operation` is refused."""

    capabilities = replace(FULL, annotations=False, fields=ALL_FIELDS - {"operation"})

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.store = LocalStore(state_dir)

    def open(self, *, deadline: float | None = None) -> Backend:
        return StatefulBackend(MemoryBackend(self.account, self.capabilities), self.store)


class TestHttpV2(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        harness = HttpHarness(tmp_path / "service.sqlite")
        yield harness
        harness.close()


class TestMemory(BackendConformance):
    @pytest.fixture
    def harness(self) -> Harness:
        return MemoryHarness()


class TestMemoryWithoutAnnotations(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return StatefulMemoryHarness(tmp_path / ".reconciler")
