"""Shared fixtures. Fixtures that start real servers live in tests/fixtures/ as pytest plugins."""

from __future__ import annotations

pytest_plugins: list[str] = ["tests.fixtures.service", "tests.fixtures.mail"]
