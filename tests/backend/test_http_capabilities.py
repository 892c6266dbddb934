"""http-v2 finds out once, inside itself, whether the service keeps leases and an operation log
(contract 2.1) or not (a contract 2.0 service): one request, the first time anyone asks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.backend.http import HttpBackend
from tests.fixtures.service import RunningService


@pytest.mark.parametrize(("old_service", "has_shared_state"), [(False, True), (True, False)])
def test_leases_and_the_log_are_discovered_with_one_request(
    start_service: Callable[..., RunningService], old_service: bool, has_shared_state: bool
) -> None:
    service = start_service(smtp=False)
    service.faults.no_shared_state = old_service
    with service.client() as client:
        asked: list[int] = []
        real = client.operations

        def counted(*args: object, **kwargs: object) -> object:
            asked.append(1)
            return real(*args, **kwargs)  # type: ignore[arg-type]

        client.operations = counted  # type: ignore[method-assign,assignment]
        backend = HttpBackend(client)
        assert backend.gateways is not None and not asked  # gateway reports need no discovery
        for _ in range(3):
            assert backend.capabilities.leases is has_shared_state
            assert (backend.leases is not None) is has_shared_state
            assert (backend.operation_log is not None) is has_shared_state
        assert len(asked) == 1
