"""CLI tests reuse the engine's users repo wired to a real embedded service, and its runner that
fails a test when a key shows up in anything the CLI printed."""

from __future__ import annotations

from tests.engine.conftest import Repo, Result, repo, run_cli

__all__ = ["Repo", "Result", "repo", "run_cli"]
