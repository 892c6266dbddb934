"""The sample backend passes reconciler's conformance kit, loaded through its entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.backend.base import Backend
from reconciler.backend.registry import factory
from reconciler.config import Settings
from reconciler.testing import BackendConformance, Harness


class SampleHarness(Harness):
    def __init__(self, path: Path) -> None:
        self.settings = Settings(backend="sample-file", api_url=path.as_uri())

    def open(self, *, deadline: float | None = None) -> Backend:
        return factory(self.settings.backend).open(self.settings)


class TestSampleFile(BackendConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return SampleHarness(tmp_path / "account" / "users.json")
