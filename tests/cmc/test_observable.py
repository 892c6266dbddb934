"""Every field the backend declares observable is observed: set wrong in the console (one at a
time, by the driver), verification fails; set right, it passes. The unobservable ones never fail it."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.backend.cmc import CAPABILITIES
from reconciler.errors import ExitCode
from tests.cmc.conftest import Cmc

DECLARED: dict[str, Any] = {"role": "admin", "access": {"http_api": True, "smtp": True}}
CONSOLE: dict[str, Any] = {"role": "admin", "http_api": True, "smtp": True, "locked": False}
WRONG: dict[str, dict[str, Any]] = {
    "role": {"role": "normal"},
    "access.http_api": {"http_api": False},
    "access.smtp": {"smtp": False},
    "locked": {"locked": True},
}
UNOBSERVED: dict[str, dict[str, Any]] = {
    "timezone": {"timezone": "UTC"},
    "operation": {"operation": True},
    "access.own_data_only": {"own_data_only": True},
}


def test_the_table_covers_every_observable_field() -> None:
    assert set(WRONG) == set(CAPABILITIES.observable_fields())


@pytest.mark.parametrize("field", sorted(WRONG))
def test_an_observable_field_set_wrong_in_the_console_fails_verification(cmc: Cmc, field: str) -> None:
    key = cmc.declare("app@example.com", **DECLARED)
    cmc.standin.driver.add("app@example.com", key, **(CONSOLE | WRONG[field]))
    code, out = cmc.cli("verify")
    assert code == ExitCode.ERROR, out
    assert "FAIL app@example.com" in out


@pytest.mark.parametrize("field", sorted(UNOBSERVED))
def test_an_unobservable_field_never_fails_verification(cmc: Cmc, field: str) -> None:
    key = cmc.declare("app@example.com", **DECLARED)
    cmc.standin.driver.add("app@example.com", key, **(CONSOLE | UNOBSERVED[field]))
    code, out = cmc.cli("verify")
    assert code == 0, out
