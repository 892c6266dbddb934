"""Fixtures of the security regression suite: the users repo wired to a real embedded service."""

from __future__ import annotations

from tests.engine.conftest import repo

__all__ = ["repo"]
