"""Which backend a run talks to: `backend:` in reconciler.yaml or RECONCILER_BACKEND, default
`http-v2`. Backends are found through the entry-point group `reconciler.backends`; the built-in
ones are also known by module path, so a source checkout without an install still finds them.

An entry point names a `BackendFactory`: its declared capabilities (for `reconciler backends`,
without connecting anywhere) and `open(settings)`, which connects. A factory may also have
`declared_problems(desired, settings)`: what it refuses in users/ beyond its capabilities
(Mailgun: a login outside the sending domains), located, checked by every plan before any
request (`declared_problems` below).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from reconciler.backend.base import Backend, Capabilities
    from reconciler.config import Settings
    from reconciler.desired import DesiredState
    from reconciler.errors import Problem

GROUP = "reconciler.backends"
DEFAULT = "http-v2"
_BUILT_IN = {
    "http-v2": "reconciler.backend.http:FACTORY",
    "memory": "reconciler.backend.memory:FACTORY",
    "cmc-console": "reconciler.backend.cmc:FACTORY",
    "mailgun": "reconciler.backend.mailgun:FACTORY",
}


class BackendFactory(Protocol):
    name: str
    summary: str
    capabilities: Capabilities
    """As declared; `open` may narrow them after asking the service once."""

    def open(self, settings: Settings) -> Backend: ...


@dataclass(frozen=True)
class Installed:
    name: str
    target: str  # "module:attribute"
    built_in: bool


def installed() -> list[Installed]:
    """Every backend this installation knows, built-in first, then by name."""
    found = {name: Installed(name, target, True) for name, target in _BUILT_IN.items()}
    for ep in entry_points(group=GROUP):
        if ep.name not in _BUILT_IN:
            found[ep.name] = Installed(ep.name, ep.value, False)
    return sorted(found.values(), key=lambda b: (not b.built_in, b.name))


def factory(name: str, *, load: Callable[[str], object] | None = None) -> BackendFactory:
    """The factory of backend `name`; ConfigError naming the known ones when there is none."""
    known = {b.name: b for b in installed()}
    if name not in known:
        names = ", ".join(sorted(known))
        raise ConfigError(f"unknown backend '{name}' (RECONCILER_BACKEND / backend:); installed: {names}")
    return (load or _load)(known[name].target)  # type: ignore[return-value]


@runtime_checkable
class ChecksDeclared(Protocol):
    """The optional part of a BackendFactory: refusals of users/ that need the settings."""

    def declared_problems(self, desired: DesiredState, settings: Settings) -> list[Problem]: ...


def open_backend(settings: Settings) -> Backend:
    return factory(settings.backend).open(settings)


def declared_problems(desired: DesiredState, settings: Settings) -> list[Problem]:
    """What the configured backend's factory refuses in users/ (none when it has no such check)."""
    made = factory(settings.backend)
    return list(made.declared_problems(desired, settings)) if isinstance(made, ChecksDeclared) else []


def _load(target: str) -> object:
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"backend {target} cannot be loaded: {exc}") from exc
