"""The conformance kit (reconciler.testing) against the Mailgun stand-in: the mailgun backend,
wrapped so that its key fingerprints live in a local state store (it has no annotations)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.backend.base import Backend
from reconciler.backend.mailgun import MailgunBackend
from reconciler.backend.mailgun.client import MailgunClient
from reconciler.backend.stateful import with_state
from reconciler.run.store import LocalStore
from reconciler.testing import BackendConformance, Harness
from reconciler.testing.world import DOMAIN
from reconciler_service.standins.mailgun import MailgunStandIn
from tests.mailgun.conftest import ACCOUNT_KEY, DOMAINS

KIT_DOMAINS = (*DOMAINS, DOMAIN)
# The kit declares `role: normal` in every user it plans (reconciler/testing/world.py `spec`), and
# the user schema requires it; Mailgun stores no role, so these cases see a role change that can
# never apply. Checked on a local merge: with role optional and not declared by the kit (and the
# kit's import writing importer.written_paths), all of them pass. Strict: remove when that lands.
ROLE_DECLARED = pytest.mark.xfail(strict=True, reason="the kit declares role:, which Mailgun cannot store")


class MailgunHarness(Harness):
    page_size = 100

    def __init__(self) -> None:
        self.standin = MailgunStandIn(ACCOUNT_KEY, list(KIT_DOMAINS)).start()
        self.state_dir = Path(tempfile.mkdtemp(prefix="mailgun-kit-state-"))

    def open(self, *, deadline: float | None = None) -> Backend:
        client = MailgunClient(self.standin.url, SecretStr(ACCOUNT_KEY), deadline=deadline or 60.0)
        return with_state(MailgunBackend(client, KIT_DOMAINS), LocalStore(self.state_dir))

    def lose_next_answer(self, api_user: str) -> bool:
        self.standin.lose_next_answer(api_user)
        return True

    def throttle_next(self, count: int, retry_after: int) -> bool:
        self.standin.fail_next(count, status=429, retry_after=str(retry_after))
        return True

    def unavailable_next(self, count: int) -> bool:
        self.standin.fail_next(count, status=503, retry_after=None)
        return True

    def close(self) -> None:
        self.standin.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class TestMailgunConformance(BackendConformance):
    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        made = MailgunHarness()
        yield made
        made.close()

    @ROLE_DECLARED
    def test_create_then_plan_is_empty(self, backend: Backend) -> None:
        super().test_create_then_plan_is_empty(backend)

    @ROLE_DECLARED
    def test_import_then_plan_is_empty(self, backend: Backend, tmp_path: Path) -> None:
        super().test_import_then_plan_is_empty(backend, tmp_path)

    @ROLE_DECLARED
    def test_rekey_then_plan_is_empty(self, backend: Backend) -> None:
        super().test_rekey_then_plan_is_empty(backend)

    @ROLE_DECLARED
    def test_deleting_a_user_already_gone_is_success(self, backend: Backend) -> None:
        super().test_deleting_a_user_already_gone_is_success(backend)

    @ROLE_DECLARED
    def test_declared_fields_are_stored_and_read_back(self, backend: Backend) -> None:
        super().test_declared_fields_are_stored_and_read_back(backend)
