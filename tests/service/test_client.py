"""ServiceClient against the embedded service over real loopback HTTP, including injected faults."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from pydantic import SecretStr

from reconciler import errors
from reconciler.backend.http.client import ServiceClient
from reconciler.config import Settings
from reconciler.errors import AuthError, ConfigError, Conflict, NotFound, ServiceError, ServiceUnavailable
from reconciler.secrets import ApiKey
from reconciler_service.faults import Fault
from reconciler_service.store import Store
from tests.fixtures.service import RunningService, new_key
from tests.service.conftest import attrs, create


def test_crud_round_trip(service: RunningService) -> None:
    with service.client() as client:
        user = client.create_user("app@example.com", attrs(), ApiKey(new_key()), {"owner": "team"})
        assert user.api_user == "app@example.com" and user.annotations == {"owner": "team"}
        assert client.get_user("APP@example.com") == user
        changed = client.update_user(
            "app@example.com", {"locked": True}, annotations={"owner": None, "n": "1"}
        )
        assert changed.locked and changed.annotations == {"n": "1"}
        client.delete_user("app@example.com")
        assert client.get_user("app@example.com") is None
        with pytest.raises(NotFound):
            client.delete_user("app@example.com")


def test_update_with_key_moves_key_updated_at(service: RunningService) -> None:
    with service.client() as client:
        created = client.create_user("app@example.com", attrs(), ApiKey(new_key()), {})
        rekeyed = client.update_user("app@example.com", {}, api_key=ApiKey(new_key()))
    assert created.key_updated_at is not None and rekeyed.key_updated_at is not None
    assert rekeyed.key_updated_at > created.key_updated_at


def test_list_users_reads_every_page_in_order(service: RunningService) -> None:
    store = Store(service.db_path)
    store.seed(((f"user{i:04d}@example.com", {"role": "normal"}) for i in range(250)), new_key())
    store.close()
    with service.client() as client:
        users = client.list_users()
    names = [u.api_user for u in users]
    assert len(names) == 251
    assert names == sorted(names, key=str.lower)
    assert names[0] == "admin@example.com"


@pytest.mark.parametrize(
    ("status_error", "make"),
    [
        (Conflict, lambda c: c.create_user("admin@example.com", attrs(), ApiKey(new_key()), {})),
        (NotFound, lambda c: c.update_user("ghost@example.com", {"locked": True})),
        (ServiceError, lambda c: c.update_user("admin@example.com", {"role": "boss"})),
    ],
)
def test_errors_are_mapped(
    service: RunningService, status_error: type[ServiceError], make: Callable[[ServiceClient], object]
) -> None:
    with service.client() as client, pytest.raises(status_error) as caught:
        make(client)
    assert caught.value.status in {400, 404, 409}


def test_validation_error_message_names_the_field(service: RunningService) -> None:
    with service.client() as client, pytest.raises(ServiceError) as caught:
        client.update_user("admin@example.com", {"role": "boss"})
    assert caught.value.status == 400 and caught.value.code == "literal_error"
    assert "role:" in str(caught.value)


def test_bad_credentials_are_auth_error(service: RunningService) -> None:
    with service.client(api_key="wrongKey123") as client, pytest.raises(AuthError) as caught:
        client.list_users()
    assert caught.value.status == 401


def test_normal_user_client_gets_auth_error_on_writes(service: RunningService) -> None:
    key = create(service, "reader@example.com", operation=True)
    with service.client("reader@example.com", key) as client:
        assert len(client.list_users()) == 2
        with pytest.raises(AuthError) as caught:
            client.update_user("admin@example.com", {"locked": True})
    assert caught.value.status == 403


def test_our_errors_do_not_subclass_requests_errors() -> None:
    # So the HTTP library can be swapped without callers noticing (kopf does the same).
    for name in ("ServiceError", "ServiceUnavailable", "AuthError", "NotFound", "Conflict"):
        cls = getattr(errors, name)
        assert not issubclass(cls, requests.RequestException)
        assert not issubclass(cls, OSError)
        assert issubclass(cls, errors.ReconcilerError)


class TestFaults:
    def test_5xx_is_retried(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False)
        svc.faults.next_faults.extend([Fault.UNAVAILABLE, Fault.UNAVAILABLE])
        with svc.client() as client:
            assert [u.api_user for u in client.list_users()] == ["admin@example.com"]
        assert not svc.faults.next_faults

    def test_5xx_after_retries_is_service_unavailable(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False, rate_5xx=1.0)
        with svc.client(retries=2) as client, pytest.raises(ServiceUnavailable) as caught:
            client.get_user("admin@example.com")
        assert caught.value.status == 503

    def test_429_waits_for_retry_after(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False, retry_after_s=1)
        svc.faults.next_faults.append(Fault.THROTTLE)
        with svc.client() as client:
            started = time.monotonic()
            assert client.get_user("admin@example.com") is not None
        assert time.monotonic() - started >= 0.95

    def test_429_on_create_is_retried_because_nothing_happened(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False, retry_after_s=0)
        svc.faults.next_faults.append(Fault.THROTTLE)
        with svc.client() as client:
            user = client.create_user("app@example.com", attrs(), ApiKey(new_key()), {})
        assert user.api_user == "app@example.com"

    def test_dropped_connection_on_read_is_retried(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False)
        svc.faults.next_faults.extend([Fault.DROP, Fault.DROP])
        with svc.client() as client:
            assert client.get_user("admin@example.com") is not None

    def test_lost_create_response_is_settled_by_reading_back(
        self, start_service: Callable[..., RunningService], caplog: pytest.LogCaptureFixture
    ) -> None:
        svc = start_service(smtp=False)
        svc.faults.next_faults.append(Fault.DROP)  # the POST is applied, its answer is lost
        with svc.client() as client:
            user = client.create_user("app@example.com", attrs(), ApiKey(new_key()), {"set-at": "t1"})
            assert user.api_user == "app@example.com" and user.annotations == {"set-at": "t1"}
            assert len(client.list_users()) == 2  # created exactly once
        assert "settling by reading it back" in caplog.text

    def test_lost_create_that_differs_is_a_conflict(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False)
        create(svc, "app@example.com", annotations={"set-at": "other-run"})
        svc.faults.next_faults.append(Fault.DROP)
        with svc.client() as client, pytest.raises(Conflict, match="differs"):
            client.create_user("app@example.com", attrs(), ApiKey(new_key()), {"set-at": "t1"})

    def test_retried_delete_whose_answer_was_lost_succeeds(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False)
        create(svc, "app@example.com")
        svc.faults.next_faults.append(Fault.DROP)  # the DELETE happens; the retry then finds 404
        with svc.client() as client:
            client.delete_user("app@example.com")
            assert client.get_user("app@example.com") is None

    def test_patch_is_retried_after_a_lost_answer(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False)
        create(svc, "app@example.com")
        svc.faults.next_faults.append(Fault.DROP)
        with svc.client() as client:
            assert client.update_user("app@example.com", {"locked": True}).locked

    def test_read_timeout_is_service_unavailable(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False, latency_ms=300)
        with svc.client(read_timeout=0.1, retries=1) as client, pytest.raises(ServiceUnavailable) as caught:
            client.list_users()
        assert "ReadTimeoutError" in str(caught.value)

    def test_latency_within_timeout_is_fine(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False, latency_ms=50)
        with svc.client(read_timeout=2) as client:
            started = time.monotonic()
            assert client.get_user("admin@example.com") is not None
        assert time.monotonic() - started >= 0.05

    def test_fail_writes_for_fails_only_that_user(self, start_service: Callable[..., RunningService]) -> None:
        svc = start_service(smtp=False)
        svc.faults.fail_writes_for = {"Bad@example.com"}
        with svc.client() as client:
            client.create_user("good@example.com", attrs(), ApiKey(new_key()), {})
            with pytest.raises(ServiceUnavailable) as caught:
                client.create_user("bad@example.com", attrs(), ApiKey(new_key()), {})
            assert caught.value.status == 500
            assert client.get_user("bad@example.com") is None

    def test_random_faults_with_a_seed_still_converge(
        self, start_service: Callable[..., RunningService]
    ) -> None:
        svc = start_service(smtp=False, rate_5xx=0.2, rate_drop=0.1, rate_429=0.1, retry_after_s=0, seed=7)
        with svc.client(retries=10) as client:
            for i in range(15):
                client.create_user(f"u{i:02d}@example.com", attrs(), ApiKey(new_key()), {"i": str(i)})
            names = [u.api_user for u in client.list_users()]
        assert names == ["admin@example.com"] + [f"u{i:02d}@example.com" for i in range(15)]

    def test_unreachable_service_is_service_unavailable(self) -> None:
        client = ServiceClient("http://127.0.0.1:9/api/v2", "a@example.com", SecretStr("abcd1234"), retries=0)
        with client, pytest.raises(ServiceUnavailable, match="cannot reach"):
            client.list_users()


@pytest.mark.parametrize(("user", "key"), [("a@example.com", "Wrongkey€123"), ("ř@example.com", "abcd1234")])
def test_credentials_requests_cannot_encode_are_a_service_error(
    service: RunningService, user: str, key: str
) -> None:
    # HTTP Basic is latin-1: requests raises UnicodeEncodeError (a ValueError) before sending.
    with ServiceClient(service.base_url, user, SecretStr(key), retries=0) as client:
        with pytest.raises(ServiceError) as caught:
            client.list_users()
        with pytest.raises(ServiceError):
            client.create_user("b@example.com", attrs(), ApiKey(new_key()), {})
    message = str(caught.value)
    assert key not in message and "Wrongkey" not in message
    assert "GET /api_users" in message and "cannot be sent" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


class TestConfiguration:
    def test_plain_http_only_to_loopback(self) -> None:
        with pytest.raises(ConfigError, match="ALLOW_INSECURE_HTTP"):
            ServiceClient("http://service.example.com/api/v2", "a@example.com", SecretStr("abcd1234"))
        ServiceClient(
            "http://service.example.com/api/v2",
            "a@example.com",
            SecretStr("abcd1234"),
            allow_insecure_http=True,
        ).close()
        ServiceClient("http://localhost:1/api/v2", "a@example.com", SecretStr("abcd1234")).close()
        ServiceClient("https://service.example.com/api/v2", "a@example.com", SecretStr("abcd1234")).close()

    def test_credentials_in_url_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="credentials"):
            ServiceClient("https://u:p@service.example.com/api/v2", "a@example.com", SecretStr("abcd1234"))

    def test_missing_credentials_name_the_variables(self) -> None:
        with pytest.raises(ConfigError, match="RECONCILER_API_USER and RECONCILER_API_KEY"):
            ServiceClient.from_settings(Settings())

    def test_from_settings_uses_timeouts_and_verifies_tls(self, service: RunningService) -> None:
        settings = Settings(
            api_url=service.base_url,
            api_user=service.admin_user,
            api_key=SecretStr(service.admin_key),
            connect_timeout=1.5,
            read_timeout=2.5,
            concurrency=12,
        )
        with ServiceClient.from_settings(settings) as client:
            assert client.timeout == (1.5, 2.5)
            assert client.session.verify is True
            assert client.session.get_adapter("http://x")._pool_maxsize == 12  # type: ignore[attr-defined]
            assert client.list_users()[0].api_user == service.admin_user

    def test_repr_has_no_key(self, service: RunningService) -> None:
        with service.client() as client:
            assert service.admin_key not in repr(client)


def test_fixture_starts_fast(start_service: Callable[..., RunningService]) -> None:
    start_service()  # the first start pays imports
    started = time.perf_counter()
    svc = start_service()
    assert time.perf_counter() - started < 0.1
    with svc.client() as client:
        assert client.get_user(svc.admin_user) is not None


def test_a_conditional_patch_whose_answer_was_lost_settles_by_reading_back(service: RunningService) -> None:
    create(service, "app@example.com")
    with service.client() as client:
        seen = client.get_user("app@example.com")
        assert seen is not None and seen.version
        service.faults.drop_next_write_for = {"app@example.com"}
        # The retry meets the version its own first attempt made: that is not "changed since".
        changed = client.update_user("app@example.com", {"timezone": "UTC"}, if_match=seen.version)
        assert changed.timezone == "UTC" and not service.faults.drop_next_write_for


def test_a_conditional_write_to_a_user_changed_by_someone_else_is_changed_since_plan_not_retried(
    service: RunningService,
) -> None:
    create(service, "app@example.com")
    with service.client() as client:
        seen = client.get_user("app@example.com")
        assert seen is not None
        client.update_user("app@example.com", {"description": "console"})
        with pytest.raises(errors.ChangedSincePlan, match="HTTP 412"):
            client.update_user("app@example.com", {"timezone": "UTC"}, if_match=seen.version)
        with pytest.raises(errors.ChangedSincePlan):
            client.delete_user("app@example.com", if_match=seen.version)
        assert client.get_user("app@example.com") is not None


def test_once_the_lease_is_lost_no_write_is_sent(service: RunningService) -> None:
    create(service, "app@example.com")
    with service.client() as client:
        client.lose_lease("renewal failed")
        with pytest.raises(errors.LeaseLost, match="not sent: renewal failed"):
            client.update_user("app@example.com", {"timezone": "UTC"})
        with pytest.raises(errors.LeaseLost):
            client.create_user("new@example.com", attrs(), ApiKey(new_key()), {})
    with service.client() as other:
        user = other.get_user("app@example.com")
        assert user is not None and user.timezone != "UTC" and other.get_user("new@example.com") is None
