"""A backend without annotations, wrapped: its annotations live in the state store, survive the
connection, are written with compare-and-swap, and a plan made before any state exists says
which keys it could not compare ("no recorded state yet") in text, Markdown and JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.backend.memory import FULL, MemoryAccount, MemoryBackend
from reconciler.backend.stateful import NO_STATE, StatefulBackend, with_state, without_recorded_state
from reconciler.errors import StateConflict
from reconciler.output import plan_to_json, render_markdown, render_text
from reconciler.plan import FINGERPRINT_ANNOTATION, KeyInputs, make_plan
from reconciler.run.store import LocalStore
from reconciler.testing.world import new_key, spec

BARE = replace(FULL, annotations=False)
NOTE = {FINGERPRINT_ANNOTATION: "hmac-sha256:abc"}


def wrapped(account: MemoryAccount, store: LocalStore) -> StatefulBackend:
    backend = with_state(MemoryBackend(account, BARE), store)
    assert isinstance(backend, StatefulBackend) and backend.capabilities.annotations
    return backend


def test_a_backend_with_annotations_is_not_wrapped(tmp_path: Path) -> None:
    backend = MemoryBackend()
    assert with_state(backend, LocalStore(tmp_path)) is backend


def test_annotations_are_kept_in_the_store_and_seen_by_the_next_run(tmp_path: Path) -> None:
    account, store = MemoryAccount(), LocalStore(tmp_path)
    first = wrapped(account, store)
    first.users.create("a@example.com", {"role": "normal"}, new_key(), NOTE)
    first.users.update("a@example.com", {}, annotations={"reconciler/key-updated-at": "t1"})
    assert first.users.get("a@example.com").annotations == {**NOTE, "reconciler/key-updated-at": "t1"}  # type: ignore[union-attr]
    assert account.users["a@example.com"].annotations == {}  # the service itself keeps none
    first.close()
    second = wrapped(account, store)
    assert second.has_state
    assert [u.annotations for u in second.users.list()] == [{**NOTE, "reconciler/key-updated-at": "t1"}]
    second.users.delete("a@example.com")
    second.close()
    assert wrapped(account, store).annotations_of("a@example.com") == {}


def test_two_runs_that_both_recorded_state_cannot_both_win(tmp_path: Path) -> None:
    account, store = MemoryAccount(), LocalStore(tmp_path)
    one, two = wrapped(account, store), wrapped(account, store)
    one.users.create("a@example.com", {"role": "normal"}, new_key(), NOTE)
    two.users.create("b@example.com", {"role": "normal"}, new_key(), NOTE)
    one.close()
    with pytest.raises(StateConflict):
        two.close()
    assert set(store.read().users) == {"a@example.com"}


def test_before_any_state_the_plan_says_no_recorded_state_yet_in_every_format(tmp_path: Path) -> None:
    account = MemoryAccount()
    account.seed("a@example.com", {"role": "normal"}, new_key())
    backend = wrapped(account, LocalStore(tmp_path))
    live = backend.users.list()
    declared = [spec("a").model_copy(update={"api_user": "a@example.com"})]
    inputs = without_recorded_state(KeyInputs(fingerprints={"a@example.com": "hmac-sha256:1"}), backend, live)
    plan = make_plan(declared, live, desired_digest="d", keys=inputs)
    assert not plan.changes  # not "key changed" for a key nobody recorded
    assert NO_STATE in render_text(plan)
    assert NO_STATE in render_markdown(plan)
    skipped = plan_to_json(plan)["key_checks"]["skipped"]
    assert skipped == [{"api_user": "a@example.com", "reason": "no recorded state yet"}]
    json.dumps(plan_to_json(plan))


def test_once_state_exists_the_key_checks_compare_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write({}, expected=None)
    backend = wrapped(MemoryAccount(), store)
    inputs = KeyInputs(fingerprints={"a@example.com": "f"})
    assert without_recorded_state(inputs, backend, []) is inputs
