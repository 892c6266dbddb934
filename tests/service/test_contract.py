"""Property-based contract test: schemathesis generates requests from openapi.json and checks that
the running service's answers conform to it (status codes, content types, response schemas, no 5xx).
Bounded so that it stays a few seconds in `make test`."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks

from tests.fixtures.service import RunningService

CHECKS = [
    schemathesis.checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


schema = schemathesis.openapi.from_dict(
    json.loads(resources.files("reconciler_service").joinpath("openapi.json").read_text())
)
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
NORMAL = "plain@example.com"


@schema.parametrize()
@SETTINGS
def test_service_conforms_to_its_contract(case: Any, service: RunningService) -> None:
    session = requests.Session()
    session.auth = (service.admin_user, service.admin_key)
    case.call_and_validate(base_url=service.base_url, session=session, checks=CHECKS)


@schema.parametrize()
@SETTINGS
def test_service_conforms_to_its_contract_for_a_normal_user(case: Any, service: RunningService) -> None:
    """The refusals and the narrowed answers of the roles (docs/contract.md) conform too."""
    key = "plainKey123"
    body = {"api_user": NORMAL, "api_key": key, "role": "normal", "access": {"http_api": True}}
    created = requests.post(
        service.base_url + "/api_users", json=body, auth=(service.admin_user, service.admin_key), timeout=10
    )
    assert created.status_code in (201, 409), created.text
    session = requests.Session()
    session.auth = (NORMAL, key)
    case.call_and_validate(base_url=service.base_url, session=session, checks=CHECKS)
