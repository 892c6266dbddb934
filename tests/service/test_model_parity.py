"""The service keeps its own copy of the user rules (it never imports the tool): both must accept
and refuse the same things, or `reconciler validate` and the service would disagree."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from reconciler import model as tool
from reconciler_service import model as service


def test_both_models_have_the_same_json_schema() -> None:
    assert service.UserAttributes.model_json_schema() == tool.UserAttributes.model_json_schema()


@pytest.mark.parametrize("name", ["EMAIL_RE", "SENDER_RE", "KEY_RE", "KEY_RULE", "TIMEZONE_RE"])
def test_both_use_the_same_patterns(name: str) -> None:
    assert getattr(service, name) == getattr(tool, name)


def _accepts(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "data",
    [
        {"role": "normal"},
        {"role": "boss"},
        {"role": "normal", "operation": "yes"},
        {"role": "normal", "timezone": "Europe"},
        {"role": "normal", "timezone": "../../etc/passwd"},
        {"role": "normal", "access": {"own_data_only": True}},
        {"role": "normal", "access": {"smtp": True}, "smtp_senders": ["@example.com", "@EXAMPLE.com"]},
        {"role": "normal", "smtp_senders": ["a@example.com"]},
        {"role": "normal", "description": "two\nlines"},
        {"role": "normal", "description": "x" * 201},
        {"role": "admin", "access": {"http_api": True, "own_data_only": True}, "timezone": "UTC"},
        {"role": "normal", "extra": 1},
    ],
)
def test_both_models_agree_on_each_case(data: dict[str, Any]) -> None:
    assert _accepts(service.UserAttributes, data) == _accepts(tool.UserAttributes, data)
