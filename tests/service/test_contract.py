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


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_service_conforms_to_its_contract(case: Any, service: RunningService) -> None:
    session = requests.Session()
    session.auth = (service.admin_user, service.admin_key)
    case.call_and_validate(base_url=service.base_url, session=session, checks=CHECKS)
