"""The `backends` workflow: each installed backend and the capabilities it declares, read from its
factory without connecting anywhere. A backend whose module cannot be loaded (not installed, or
broken) is listed as unavailable with the reason, never a failure of the whole list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.backend.registry import factory, installed
from reconciler.errors import ConfigError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    built_in: bool
    summary: str | None
    capabilities: dict[str, Any] | None  # None when unavailable
    unavailable: str | None = None  # why it cannot be loaded


def backends() -> list[BackendInfo]:
    return [_info(b.name, b.built_in) for b in installed()]


def _info(name: str, built_in: bool) -> BackendInfo:
    try:
        found = factory(name)
        return BackendInfo(name, built_in, str(found.summary), found.capabilities.to_json())
    except ConfigError as exc:
        return BackendInfo(name, built_in, None, None, str(exc))
    except Exception as exc:  # a third-party factory must not break the list
        return BackendInfo(name, built_in, None, None, f"{type(exc).__name__}: {exc}")
