"""A Hypothesis state machine over the whole loop: random declared states, random edits made in the
console behind the reconciler's back, random faults on the service. The invariant: after a
fault-free apply the plan is empty and the service equals the files, keys included."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from reconciler.secrets import ApiKey
from tests.engine.conftest import Repo
from tests.fixtures.service import RunningService, new_key, start

NAMES = ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
OVERRIDES = ("--allow-deletes", "10", "--allow-locks", "10")
fields = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["admin", "normal"]),
        "locked": st.booleans(),
        "description": st.sampled_from(["", "one", "two words"]),
        "access": st.fixed_dictionaries({"http_api": st.booleans(), "smtp": st.booleans()}),
    }
)


class ReconcileMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name)
        self.service: RunningService = start(root / "service.sqlite", smtp=False)
        (root / "users").mkdir()
        self.repo = Repo(root, self.service)
        self.repo.write(
            self.service.admin_user, key=self.service.admin_key, role="admin", access={"http_api": True}
        )
        self.declared: dict[str, dict[str, Any]] = {}

    def teardown(self) -> None:
        try:
            self.apply_without_faults()  # every example ends by checking the invariant once more
        finally:
            self.service.stop()
            self.tmp.cleanup()

    @rule(name=st.sampled_from(NAMES), spec=fields, new_key_=st.booleans())
    def declare(self, name: str, spec: dict[str, Any], new_key_: bool) -> None:
        self.declared[name] = spec
        self.repo.write(name, key=new_key() if new_key_ else None, **spec)

    @precondition(lambda self: self.declared)
    @rule(data=st.data())
    def undeclare(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.declared)))
        del self.declared[name]
        self.repo.remove(name)
        self.repo.keys.pop(name)

    @rule(
        name=st.sampled_from(NAMES), edit=st.sampled_from(["describe", "lock", "rekey", "delete", "create"])
    )
    def console_edit(self, name: str, edit: str) -> None:
        """What an operator does in the console, without telling the reconciler."""
        with self.service.client() as client:
            exists = client.get_user(name) is not None
            if edit == "create" and not exists:
                attributes = {"role": "normal", "access": {"http_api": True, "smtp": False}}
                client.create_user(name, attributes, ApiKey(new_key()), {})
            elif edit == "delete" and exists:
                client.delete_user(name)
            elif edit == "describe" and exists:
                client.update_user(name, {"description": "edited in the console"})
            elif edit == "lock" and exists:
                client.update_user(name, {"locked": True})
            elif edit == "rekey" and exists:
                client.update_user(name, {}, api_key=ApiKey(new_key()))

    @rule(rate_5xx=st.sampled_from([0.0, 0.3]), rate_drop=st.sampled_from([0.0, 0.2]))
    def apply_under_faults(self, rate_5xx: float, rate_drop: float) -> None:
        faults = self.service.faults
        faults.rate_5xx, faults.rate_drop = rate_5xx, rate_drop
        try:
            result = self.repo.run("apply", "--auto-approve", *OVERRIDES)
        finally:
            faults.rate_5xx = faults.rate_drop = 0.0
        assert result.code in (0, 1), result.output  # a fault may fail a change, never the tool

    @rule()
    def apply_without_faults(self) -> None:
        # --force-unlock: a lease PUT whose answer a fault dropped leaves a lease no run holds a
        # token for, until it expires (60 s); the person at the terminal would break it.
        applied = self.repo.run("apply", "--auto-approve", "--force-unlock", *OVERRIDES)
        assert applied.code == 0, applied.output
        planned = self.repo.run("plan", "--detailed-exitcode")
        assert planned.code == 0, planned.output
        self._service_equals_files()

    def _service_equals_files(self) -> None:
        live = self.repo.live()
        assert set(live) == {self.service.admin_user, *self.declared}
        for name, spec in self.declared.items():
            user = live[name]
            assert (user.role, user.locked) == (spec["role"], spec["locked"])
            assert (user.description or "") == spec["description"]
            assert (user.access.http_api, user.access.smtp) == (
                spec["access"]["http_api"],
                spec["access"]["smtp"],
            )
            if spec["access"]["http_api"] and not spec["locked"]:
                answer = requests.get(
                    f"{self.service.base_url}/api_users/{name}", auth=(name, self.repo.keys[name]), timeout=10
                )
                assert answer.status_code == 200, name


ReconcileMachine.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_reconcile_state_machine = ReconcileMachine.TestCase
