"""One snapshot serves a whole `reconcile`: users/ is read once and each key is resolved once,
although the plan, its mail preview, the check of the reconciler's own key, the apply and the
mail step all need keys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconciler import secrets
from reconciler.mail import SASL_PASSWD
from reconciler.model import KeyRef
from tests.engine.conftest import Repo


def test_a_reconcile_resolves_each_key_exactly_once(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write("a@example.com", access={"smtp": True})
    repo.write("b@example.com", access={"smtp": True})
    repo.write("c@example.com", access={"http_api": True})  # no mail lines: its key is for the service only
    resolutions: Counter[str] = Counter()
    real = secrets.resolve

    def counting(ref: KeyRef, base_dir: Path, env: Any = None) -> secrets.ApiKey:
        resolutions[ref.describe()] += 1
        return real(ref, base_dir, env)

    monkeypatch.setattr(secrets, "resolve", counting)
    mail_dir = tmp_path / "mail"
    env = repo.env() | {"RECONCILER_MAIL_DIR": str(mail_dir), "RECONCILER_MAIL_FILE_GROUP": "root"}
    result = repo.run("reconcile", "--auto-approve", "--no-reload", env=env)
    assert result.code == 0, result.output
    assert "a@example.com" in (mail_dir / SASL_PASSWD).read_text()  # the mail step did run
    names = [
        repo.var(u) for u in ("a@example.com", "b@example.com", "c@example.com", repo.service.admin_user)
    ]
    assert resolutions == Counter({f"env {name}": 1 for name in names})


def test_the_mail_step_uses_the_key_the_service_got_even_if_the_file_changes_mid_run(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "a.key"
    first = "k1" + "A" * 10 + "b" * 10
    key_file.write_text(first + "\n")
    key_file.chmod(0o600)
    repo.write("a@example.com", api_key={"from_file": str(key_file)}, access={"http_api": True, "smtp": True})
    real = secrets.resolve

    def replaced_after_reading(ref: KeyRef, base_dir: Path, env: Any = None) -> secrets.ApiKey:
        key = real(ref, base_dir, env)
        if ref.from_file is not None:
            key_file.write_text("k2" + "C" * 10 + "d" * 10 + "\n")  # someone rotates it meanwhile
        return key

    monkeypatch.setattr(secrets, "resolve", replaced_after_reading)
    mail_dir = tmp_path / "mail"
    env = repo.env() | {"RECONCILER_MAIL_DIR": str(mail_dir), "RECONCILER_MAIL_FILE_GROUP": "root"}
    result = repo.run("reconcile", "--auto-approve", "--no-reload", env=env)
    assert result.code == 0, result.output
    assert f"a@example.com a@example.com:{first}\n" in (mail_dir / SASL_PASSWD).read_text()
    with repo.service.client("a@example.com", first) as client:  # the service got the same key
        assert client.list_users()
