"""The http-v2 transport's retry rules (reconciler/backend/http/retry.py) as tables, and the
transport against the embedded service: a deadline per change, not a count."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from reconciler.backend.http.retry import Deadlines, RetryPolicy, retry_after, sleep_within
from reconciler.errors import ServiceUnavailable
from reconciler.secrets import ApiKey
from reconciler_service.faults import Fault
from tests.fixtures.service import RunningService, new_key

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("Fri, 04 Dec 2026 12:00:07 GMT", 7.0),
        ("Fri, 04 Dec 2026 11:59:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("retry", range(12))
def test_the_pause_is_jittered_backoff_and_never_shorter_than_retry_after(retry: int) -> None:
    policy = RetryPolicy(backoff_factor=0.1, backoff_max=5.0)
    backoff = min(5.0, 0.1 * 2**retry)
    assert backoff / 2 <= policy.delay(retry, None) <= backoff
    assert policy.delay(retry, 7.0) >= 7.0
    assert policy.delay(retry, 600.0) == policy.retry_after_max


def test_no_count_limits_retries_unless_one_is_set() -> None:
    assert RetryPolicy().allows(10_000)
    assert not RetryPolicy(max_retries=0).allows(0)
    assert RetryPolicy(max_retries=2).allows(1) and not RetryPolicy(max_retries=2).allows(2)


def test_a_pause_past_the_deadline_is_not_slept() -> None:
    deadlines = Deadlines(0.2)
    with deadlines.change():
        started = time.monotonic()
        assert not sleep_within(deadlines, 5.0)
        assert time.monotonic() - started < 0.1
        assert sleep_within(deadlines, 0.01)


def test_one_change_shares_one_deadline_and_each_thread_has_its_own() -> None:
    deadlines = Deadlines(1.0)
    seen: list[float] = []
    with deadlines.change():
        time.sleep(0.2)
        with deadlines.change():  # nested: still the outer change's deadline
            assert deadlines.remaining() < 0.85
        other = threading.Thread(target=lambda: seen.append(deadlines.remaining()))
        other.start()
        other.join()
    assert seen and seen[0] == 1.0  # a thread outside any change: a whole deadline of its own


def test_a_lost_create_is_settled_through_more_failures_than_any_small_count(
    start_service: Callable[..., RunningService],
) -> None:
    svc = start_service(smtp=False)
    # The POST is applied and its answer lost; then the settling reads meet 7 refusals and
    # another lost answer: more than the old count of 5, well within the deadline.
    svc.faults.next_faults.extend(
        [Fault.DROP, *[Fault.UNAVAILABLE] * 4, Fault.DROP, *[Fault.UNAVAILABLE] * 3]
    )
    with svc.client(backoff_factor=0.01) as client:
        made = client.create_user("lost@example.com", {"role": "normal"}, ApiKey(new_key()), {})
        assert made.api_user == "lost@example.com"
        assert [u.api_user for u in client.list_users()].count("lost@example.com") == 1
        creates = [o for o in client.operations(api_user="lost@example.com") or [] if o.action == "create"]
    assert len(creates) == 1


def test_a_write_gives_up_at_the_deadline_not_before(start_service: Callable[..., RunningService]) -> None:
    svc = start_service(smtp=False)
    svc.faults.rate_5xx = 1.0  # every request refused
    with svc.client(backoff_factor=0.05, change_deadline=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="HTTP 503"):
            client.update_user("admin@example.com", {"description": "x"})
        took = time.monotonic() - started
    assert 0.5 < took < 2.0
