"""No response body, log line or error text ever contains a key."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from reconciler.errors import ReconcilerError
from reconciler.secrets import ApiKey
from reconciler_service.faults import Fault
from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import attrs, raw


def test_no_key_in_responses_logs_or_errors(
    start_service: Callable[..., RunningService], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    svc = start_service()
    keys = [new_key() for _ in range(4)]
    texts: list[str] = []
    with svc.client() as client:
        texts.append(client.create_user("a@example.com", attrs(), ApiKey(keys[0]), {}).model_dump_json())
        texts.append(client.update_user("a@example.com", {}, api_key=ApiKey(keys[1])).model_dump_json())
        svc.faults.next_faults.append(Fault.DROP)  # the settle-by-read-back path logs a warning
        texts.append(client.create_user("b@example.com", attrs(), ApiKey(keys[2]), {}).model_dump_json())
        texts.extend(u.model_dump_json() for u in client.list_users())
        failures: list[Callable[[], object]] = [
            lambda: client.create_user("a@example.com", attrs(), ApiKey(keys[3]), {}),  # 409
            lambda: client.create_user("c@example.com", attrs(role="x"), ApiKey(keys[3]), {}),  # 400
            lambda: client.update_user("zz@example.com", {}, api_key=ApiKey(keys[3])),  # 404
        ]
        for fail in failures:
            with pytest.raises(ReconcilerError) as caught:
                fail()
            texts.append(str(caught.value))
    with svc.client("a@example.com", keys[1]) as normal, pytest.raises(ReconcilerError) as denied:
        normal.update_user("b@example.com", {}, api_key=ApiKey(keys[3]))  # 403
    texts.append(str(denied.value))
    with svc.client(api_key=keys[0]) as wrong, pytest.raises(ReconcilerError) as unauthorized:
        wrong.list_users()  # 401 with someone else's key
    texts.append(str(unauthorized.value))
    for body in (
        {"api_user": "d@example.com", "api_key": keys[3] + "!", "role": "normal"},
        {"api_key": keys[3]},
    ):
        texts.append(raw(svc, "POST", "/api_users", json=body).text)
    texts.extend(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert len(caplog.records) > 5  # the service and client did log: the check below means something
    everything = "\n".join(texts)
    for key in [*keys, svc.admin_key]:
        assert key not in everything
