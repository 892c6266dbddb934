"""`live` and `service messages`: what the backend holds now, read-only."""

from __future__ import annotations

from typing import Any

from reconciler.backend.http import HttpBackend
from reconciler.errors import ConfigError
from reconciler.model import LiveUser
from reconciler.workflows.context import Run


def live_users(run: Run) -> list[LiveUser]:
    return run.backend.users.list()


def relay_messages(run: Run) -> list[dict[str, Any]]:
    """The messages the embedded service's SMTP relay accepted: an http-v2 feature only."""
    backend = run.backend
    if not isinstance(backend, HttpBackend):
        raise ConfigError(f"the {backend.name} backend has no relay messages (only http-v2 does)")
    return backend.client.relay_messages()
