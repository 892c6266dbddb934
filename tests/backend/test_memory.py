"""The memory backend keeps the seam's contract: versions and conditional writes, annotations, an
operation log with the run's identity, leases that fence writes, gateway reports, and narrower
capabilities on request."""

from __future__ import annotations

import threading

import pytest

from reconciler.backend.base import ALL_FIELDS, Backend, Capabilities, RunIdentity
from reconciler.backend.memory import FULL, MemoryAccount, MemoryBackend
from reconciler.backend.registry import factory
from reconciler.errors import ChangedSincePlan, LeaseLost, LockHeld
from reconciler.secrets import ApiKey

KEY = ApiKey("Key12345678")
REQUEST = {"holder": "ci", "host": "h", "pid": 1, "command": "apply", "ttl_seconds": 60}


def test_the_registry_finds_the_memory_backend_with_full_capabilities() -> None:
    found = factory("memory")
    assert found.name == "memory" and found.capabilities == FULL
    assert isinstance(MemoryBackend(), Backend)


def test_a_conditional_write_with_an_old_version_is_changed_since_plan() -> None:
    backend = MemoryBackend()
    made = backend.users.create("a@example.com", {"role": "normal"}, KEY, {})
    updated = backend.users.update("a@example.com", {"timezone": "UTC"}, if_match=made.version)
    assert updated.timezone == "UTC" and updated.version != made.version
    with pytest.raises(ChangedSincePlan):
        backend.users.lock("a@example.com", if_match=made.version)
    assert backend.users.get("a@example.com").locked is False  # type: ignore[union-attr]


def test_a_create_that_finds_its_own_user_is_done_and_a_delete_of_a_gone_user_is_success() -> None:
    backend = MemoryBackend()
    first = backend.users.create("a@example.com", {"role": "normal"}, KEY, {})
    assert backend.users.create("a@example.com", {"role": "normal"}, KEY, {}).version == first.version
    backend.users.delete("a@example.com")
    backend.users.delete("a@example.com")
    assert backend.users.list() == []


def test_every_write_is_logged_with_the_run_identity_and_never_a_key() -> None:
    backend = MemoryBackend()
    backend.identify(RunIdentity("alice", "abc123", "run-7"))
    backend.users.create("a@example.com", {"role": "normal"}, KEY, {"k": "v"})
    backend.users.set_key("a@example.com", ApiKey("Other1234567"), annotations={"k": None})
    assert backend.operation_log is not None
    ops = backend.operation_log.operations()
    assert [o.action for o in ops] == ["key_change", "create"]
    assert {(o.actor, o.commit, o.run, o.source) for o in ops} == {("alice", "abc123", "run-7", "reconciler")}
    assert "Key12345678" not in repr(ops) and backend.users.get("a@example.com").annotations == {}  # type: ignore[union-attr]


def test_a_lease_is_exclusive_and_fences_writes_once_broken() -> None:
    account = MemoryAccount()
    mine, other = MemoryBackend(account), MemoryBackend(account)
    assert mine.leases is not None and other.leases is not None
    lease = mine.leases.acquire("reconcile", REQUEST)
    with pytest.raises(LockHeld):
        other.leases.acquire("reconcile", REQUEST)
    mine.use_lease(lease.token.get_secret_value())  # type: ignore[union-attr]
    mine.users.create("a@example.com", {"role": "normal"}, KEY, {})
    assert other.leases.force_release("reconcile")
    with pytest.raises(LeaseLost):
        mine.users.lock("a@example.com")
    assert mine.lease_lost is not None


def test_narrower_capabilities_leave_out_parts_and_fields() -> None:
    narrow = Capabilities(fields=ALL_FIELDS - {"description"}, annotations=False)
    backend = MemoryBackend(capabilities=narrow)
    assert backend.leases is None and backend.operation_log is None and backend.gateways is None
    made = backend.users.create("a@example.com", {"role": "normal", "description": "x"}, KEY, {"k": "v"})
    assert made.description is None and made.annotations == {} and made.version is None


def test_gateway_reports_are_kept_by_name() -> None:
    backend = MemoryBackend()
    assert backend.gateways is not None
    backend.gateways.report("gw1", {"commit": "c", "result": "ok"})
    assert [g["name"] for g in backend.gateways.list()] == ["gw1"]


def test_writes_from_many_threads_each_get_their_own_version() -> None:
    backend = MemoryBackend()
    names = [f"u{i}@example.com" for i in range(50)]
    threads = [
        threading.Thread(target=backend.users.create, args=(n, {"role": "normal"}, KEY, {})) for n in names
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({u.version for u in backend.users.list()}) == 50
