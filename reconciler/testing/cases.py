"""`BackendConformance`: the cases every backend must pass (docs/backends.md, "The conformance kit").

A backend's test module subclasses it and provides a `harness` fixture (reconciler.testing.Harness):

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def harness(self) -> Iterator[Harness]:
            h = MyHarness()
            yield h
            h.close()

A case that does not apply to the backend's capabilities, or needs a fault its harness cannot
inject, is skipped with the reason. "Empty plan" is the pure core's plan (reconciler.plan) of the
declared users against the backend's list.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.backend.base import ALL_FIELDS, Backend, RunIdentity
from reconciler.desired import load_users
from reconciler.errors import ChangedSincePlan, ServiceError
from reconciler.importer import import_users
from reconciler.model import UserSpec
from reconciler.plan import FINGERPRINT_ANNOTATION, Action, declared_paths
from reconciler.secrets import ApiKey, fingerprint
from reconciler.testing.harness import Harness
from reconciler.testing.world import DOMAIN, SECRET, converge, describe, new_key, plan, spec

OLD_RETRY_COUNT = 5  # what bounded retries before deadlines: more failures in a row than this


class BackendConformance:
    """The shared cases. Not collected by itself (no `Test` prefix); subclasses are."""

    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        raise NotImplementedError("a backend's test class provides the `harness` fixture")

    @pytest.fixture
    def backend(self, harness: Harness) -> Iterator[Backend]:
        opened = harness.open()
        yield opened
        opened.close()

    # Converging

    def test_create_then_plan_is_empty(self, backend: Backend) -> None:
        declared = [
            _spec(backend, "create", description="made by the kit"),
            _spec(backend, "create2", timezone="UTC"),
        ]
        keys = {u.api_user: new_key() for u in declared}
        first = plan(backend, declared, keys)
        assert [c.action for c in first.changes] == [Action.CREATE, Action.CREATE]
        after = converge(backend, declared, keys)
        assert not after.changes, describe(after)

    def test_import_then_plan_is_empty(self, backend: Backend, tmp_path: Path) -> None:
        self._needs(backend, "can_list", "it cannot list users, so there is nothing to import")
        made = _spec(backend, "imported", description="made in the console", timezone="Asia/Tokyo")
        attributes = {"role": "normal", "description": made.description, "timezone": made.timezone}
        backend.users.create(made.api_user, _stored(backend, attributes), new_key(), {})
        files = import_users([u for u in backend.users.list() if u.api_user.endswith(DOMAIN)], {})
        users_dir = tmp_path / "kit-users"
        users_dir.mkdir()
        for file in files:
            (users_dir / file.file_name).write_text(file.text)
        declared = load_users(users_dir).users
        assert made.api_user in {u.api_user for u in declared}
        # The imported files name key variables this run does not have: key checks are skipped.
        after = plan(backend, declared, {}, unavailable={u.api_user.lower(): "no key" for u in declared})
        assert not after.changes, describe(after)

    def test_rekey_then_plan_is_empty(self, backend: Backend) -> None:
        declared = [spec("rekey")]
        name = declared[0].api_user
        assert not converge(backend, declared, {name: new_key()}).changes
        rekeyed = {name: new_key()}
        pending = plan(backend, declared, rekeyed)
        assert [(c.action, c.key_change) for c in pending.changes][-1:] in (
            [(Action.UPDATE, True)],
            [(Action.CREATE, True)],  # a backend that replaces the user on a new key
        ), describe(pending)
        after = converge(backend, declared, rekeyed)
        assert not after.changes, describe(after)

    def test_lock_and_unlock(self, backend: Backend) -> None:
        self._needs(backend, "locks", "it cannot lock a user")
        key = {spec("lock").api_user: new_key()}
        assert not converge(backend, [_spec(backend, "lock", locked=False)], key).changes
        locking = plan(backend, [_spec(backend, "lock", locked=True)], key)
        assert [c.action for c in locking.changes] == [Action.LOCK], describe(locking)
        assert not converge(backend, [_spec(backend, "lock", locked=True)], key).changes
        unlocking = plan(backend, [_spec(backend, "lock", locked=False)], key)
        assert [c.action for c in unlocking.changes] == [Action.UNLOCK], describe(unlocking)
        assert not converge(backend, [_spec(backend, "lock", locked=False)], key).changes

    def test_deleting_a_user_already_gone_is_success(self, backend: Backend) -> None:
        name = spec("gone").api_user
        backend.users.delete(name)  # never existed
        assert not converge(backend, [spec("gone")], {name: new_key()}).changes
        backend.users.delete(name)
        backend.users.delete(name)  # a retry after a lost answer finds it gone
        assert backend.users.get(name) is None

    # Lost answers

    def test_a_create_sent_again_after_a_lost_answer_counts_as_applied(self, backend: Backend) -> None:
        self._needs_field(backend, "description")
        declared, key = _spec(backend, "again", description="sent twice"), new_key()
        first = plan(backend, [declared], {declared.api_user: key}).changes[0]
        notes = _notes(key)
        made = backend.users.create(declared.api_user, first.new_values(), key, notes)
        again = backend.users.create(declared.api_user, first.new_values(), key, notes)
        assert (again.api_user, again.description) == (made.api_user, "sent twice")
        assert [u.api_user for u in backend.users.list()].count(declared.api_user) == 1

    def test_a_create_whose_answer_was_lost_is_applied_once(self, harness: Harness, backend: Backend) -> None:
        declared, key = spec("lostcreate"), new_key()
        self._can(harness.lose_next_answer(declared.api_user), "lose an answer")
        change = plan(backend, [declared], {declared.api_user: key}).changes[0]
        made = backend.users.create(declared.api_user, change.new_values(), key, _notes(key))
        assert made.api_user == declared.api_user
        assert [u.api_user for u in backend.users.list()].count(declared.api_user) == 1
        if backend.operation_log is not None:
            creates = [
                o
                for o in backend.operation_log.operations(api_user=declared.api_user)
                if o.action == "create"
            ]
            assert len(creates) == 1

    def test_a_conditional_write_whose_answer_was_lost_counts_as_applied(
        self, harness: Harness, backend: Backend
    ) -> None:
        self._needs(backend, "conditional_writes", "it has no conditional writes")
        self._needs_field(backend, "description")
        declared = _spec(backend, "lostpatch", description="before")
        key = {declared.api_user: new_key()}
        assert not converge(backend, [declared], key).changes
        self._can(harness.lose_next_answer(declared.api_user), "lose an answer")
        change = plan(backend, [_spec(backend, "lostpatch", description="after")], key).changes[0]
        updated = backend.users.update(declared.api_user, change.new_values(), if_match=change.version)
        assert updated.description == "after"

    def test_a_conditional_write_to_a_user_changed_since_is_refused(self, backend: Backend) -> None:
        self._needs(backend, "conditional_writes", "it has no conditional writes")
        self._needs_field(backend, "description")
        declared = _spec(backend, "changed", description="one")
        key = {declared.api_user: new_key()}
        assert not converge(backend, [declared], key).changes
        change = plan(backend, [_spec(backend, "changed", description="two")], key).changes[0]
        backend.users.update(declared.api_user, {"description": "someone else"})
        with pytest.raises(ChangedSincePlan):
            backend.users.update(declared.api_user, change.new_values(), if_match=change.version)

    # Listing and fields

    def test_paging_past_one_page(self, harness: Harness, backend: Backend) -> None:
        if harness.page_size is None:
            pytest.skip(f"{backend.name}: its listing has no pages")
        self._needs(backend, "can_list", "it cannot list users")
        count = harness.page_size + 1
        names = [f"page{i:04d}@kit.example.com" for i in range(count)]
        for name in names:
            backend.users.create(name, {"role": "normal"}, new_key(), {})
        listed = [u.api_user for u in backend.users.list()]
        assert set(names) <= set(listed)
        assert len(listed) == len(set(listed))  # none twice across a page boundary

    def test_declared_fields_are_stored_and_read_back(self, backend: Backend) -> None:
        caps = backend.capabilities
        declared = spec(
            "fields",
            **_every_field(caps.fields & caps.observable_fields()),
        )
        key = {declared.api_user: new_key()}
        after = converge(backend, [declared], key)
        assert not after.changes, describe(after)

    def test_unsupported_fields_are_refused(self, backend: Backend) -> None:
        missing = sorted(ALL_FIELDS - backend.capabilities.fields)
        if not missing:
            pytest.skip(f"{backend.name}: it stores every field, so none is refused")
        for path in missing:
            declared = spec("unsupported", **_every_field({path, *_NEEDS.get(path, ())}))
            values = {p: _value(declared, p) for p in declared_paths(declared)}
            if path in backend.capabilities.fixed and backend.capabilities.fixed[path] == values[path]:
                continue
            assert path in backend.capabilities.unsupported(values)

    # Retries and identity

    def test_retries_honour_retry_after(self, harness: Harness, backend: Backend) -> None:
        self._can(harness.throttle_next(1, retry_after=1), "throttle a request")
        started = time.monotonic()
        backend.users.create(spec("throttled").api_user, {"role": "normal"}, new_key(), {})
        assert time.monotonic() - started >= 0.9  # it waited as long as the service asked

    def test_retries_are_bounded_by_a_deadline_not_a_count(self, harness: Harness, backend: Backend) -> None:
        self._can(harness.unavailable_next(OLD_RETRY_COUNT + 3), "refuse requests as unavailable")
        made = backend.users.create(spec("patient").api_user, {"role": "normal"}, new_key(), {})
        assert made.api_user == spec("patient").api_user
        short = harness.open(deadline=0.5)
        try:
            self._can(harness.throttle_next(1, retry_after=5), "throttle a request")
            started = time.monotonic()
            with pytest.raises(ServiceError):
                short.users.get(made.api_user)
            assert time.monotonic() - started < 2  # a Retry-After past the deadline is not waited for
        finally:
            short.close()

    def test_every_write_carries_the_run_identity(self, backend: Backend) -> None:
        self._needs(backend, "operation_log", "it keeps no operation log")
        assert backend.operation_log is not None
        run = f"kit-{uuid.uuid4().hex[:8]}"
        backend.identify(RunIdentity(actor="conformance kit", commit="0123abc", run=run))
        self._needs_field(backend, "description")
        declared = _spec(backend, "identity", description="one")
        key = {declared.api_user: new_key()}
        converge(backend, [declared], key)
        converge(backend, [_spec(backend, "identity", description="two", locked=True)], key)
        converge(
            backend,
            [_spec(backend, "identity", description="two", locked=True)],
            {declared.api_user: new_key()},
        )
        backend.users.delete(declared.api_user)
        ops = backend.operation_log.operations(api_user=declared.api_user, limit=100)
        assert {o.action for o in ops} >= {"create", "update", "lock", "key_change", "delete"}
        assert {(o.run, o.actor, o.commit, o.source) for o in ops} == {
            (run, "conformance kit", "0123abc", "reconciler")
        }

    # Helpers

    @staticmethod
    def _needs(backend: Backend, capability: str, reason: str) -> None:
        if not getattr(backend.capabilities, capability):
            pytest.skip(f"{backend.name}: {reason} (capabilities.{capability} is false)")

    @staticmethod
    def _needs_field(backend: Backend, path: str) -> None:
        if path not in backend.capabilities.fields:
            pytest.skip(f"{backend.name}: the case changes `{path}`, which it does not store")

    @staticmethod
    def _can(supported: bool, fault: str) -> None:
        if not supported:
            pytest.skip(f"this backend's harness cannot {fault}")


def _spec(backend: Backend, name: str, **fields: Any) -> UserSpec:
    """A declared user with only the fields this backend stores (a narrower backend still runs
    every case; what it cannot store is the unsupported-fields case's business)."""
    return spec(name, **_stored(backend, fields))


def _stored(backend: Backend, fields: dict[str, Any]) -> dict[str, Any]:
    caps = backend.capabilities
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            kept[name] = {k: v for k, v in value.items() if f"{name}.{k}" in caps.fields}
        elif name in caps.fields:
            kept[name] = value
    return kept


def _notes(key: ApiKey) -> dict[str, str]:
    return {FINGERPRINT_ANNOTATION: fingerprint(key, SECRET)}


# What a declared field needs beside it for the file to be valid at all.
_NEEDS = {
    "access.own_data_only": ("access.http_api",),
    "smtp_senders": ("access.smtp",),
}

_SAMPLE = {
    "role": "admin",
    "operation": True,
    "access.http_api": True,
    "access.smtp": True,
    "access.own_data_only": True,
    "timezone": "Europe/Paris",
    "locked": False,
    "smtp_senders": ["fields@kit.example.com", "@fields.kit.example.com"],
    "description": "every field",
}


def _every_field(paths: frozenset[str] | set[str]) -> dict[str, object]:
    """Non-default values for `paths`, nested as a user file declares them."""
    out: dict[str, object] = {}
    for path in sorted(paths):
        head, _, tail = path.partition(".")
        if tail:
            access = out.setdefault("access", {})
            assert isinstance(access, dict)
            access[tail] = _SAMPLE[path]
        else:
            out[head] = _SAMPLE[path]
    return out


def _value(declared: object, path: str) -> object:
    head, _, tail = path.partition(".")
    value = getattr(declared, head)
    return getattr(value, tail) if tail else value


__all__ = ["BackendConformance"]
