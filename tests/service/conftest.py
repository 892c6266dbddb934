"""Helpers shared by the service tests."""

from __future__ import annotations

from typing import Any

import requests

from tests.fixtures.service import RunningService, new_key


def attrs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"role": "normal", "access": {"http_api": True, "smtp": True}}
    return {**base, **overrides}


def raw(
    service: RunningService, method: str, path: str, auth: tuple[str, str] | None = None, **kw: Any
) -> requests.Response:
    """One plain HTTP request, to see exactly what the service answers (no client logic)."""
    creds = auth or (service.admin_user, service.admin_key)
    return requests.request(method, service.base_url + path, auth=creds, timeout=5, **kw)


def create(service: RunningService, api_user: str, key: str | None = None, **overrides: Any) -> str:
    key = key or new_key()
    body = {"api_user": api_user, "api_key": key, **attrs(**overrides)}
    response = raw(service, "POST", "/api_users", json=body)
    assert response.status_code == 201, response.text
    return key
