"""`reconciler backends`: every installed backend with its capabilities; one that cannot be loaded
(its module missing) is listed as unavailable with the reason, and the verb still succeeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.backend import registry
from reconciler.backend.http import FACTORY as HTTP
from reconciler.backend.memory import FULL, account_for
from reconciler.secrets import ApiKey
from tests.cli.schemas import validate
from tests.fixtures.cli import run_main


def test_backends_json_lists_the_built_in_ones_with_their_capabilities() -> None:
    result = run_main(["backends", "--format", "json"])
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    validate("backends", document)
    found = {b["name"]: b for b in document["backends"]}
    assert found["memory"]["capabilities"] == FULL.to_json()
    assert found["http-v2"]["capabilities"] == HTTP.capabilities.to_json()
    assert found["http-v2"]["available"] and found["http-v2"]["summary"]


def test_a_backend_whose_module_is_missing_is_listed_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = {**registry._BUILT_IN, "nowhere": "reconciler.backend.nowhere:FACTORY"}
    monkeypatch.setattr(registry, "_BUILT_IN", patched)
    result = run_main(["backends", "--format", "json"])
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    validate("backends", document)
    missing = next(b for b in document["backends"] if b["name"] == "nowhere")
    assert missing["available"] is False and missing["capabilities"] is None
    assert "No module named 'reconciler.backend.nowhere'" in missing["unavailable"]
    text = run_main(["backends"])
    assert text.code == 0 and "nowhere (built in): UNAVAILABLE: " in text.stdout
    assert "memory (built in): an account held in this process" in text.stdout


def test_the_memory_backend_runs_the_whole_cli_in_one_process(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    admin = "admin@example.com"
    (users / f"{admin}.yaml").write_text(
        f"api_user: {admin}\napi_key:\n  from_env: RECONCILER_API_KEY\n"
        "role: admin\naccess:\n  http_api: true\n"
    )
    (users / "app@example.com.yaml").write_text(
        "api_user: app@example.com\napi_key:\n  from_env: APP_KEY\nrole: normal\ntimezone: UTC\n"
    )
    env = {
        "RECONCILER_BACKEND": "memory",
        "RECONCILER_API_URL": f"memory://{tmp_path.name}",
        "RECONCILER_API_USER": admin,
        "RECONCILER_API_KEY": "AdminKey2026x",
        "RECONCILER_FINGERPRINT_SECRET": "memory-backend-fingerprint-secret-0123456789",
        "APP_KEY": "AppKey20261x",
    }
    account_for(env["RECONCILER_API_URL"]).seed(
        admin, {"role": "admin", "access": {"http_api": True}}, ApiKey("AdminKey2026x")
    )
    applied = run_main(["apply", "--users", str(users), "--auto-approve"], env=env)
    assert applied.code == 0, applied.output
    live = json.loads(run_main(["live", "--users", str(users), "--format", "json"], env=env).stdout)
    assert {u["api_user"]: u["timezone"] for u in live["api_users"]}["app@example.com"] == "UTC"
    again = run_main(["plan", "--users", str(users)], env=env)
    assert again.code == 0, again.output
