"""Every `--format json` output validates against its committed schema (docs/schemas/), errors
included; the schemas themselves are valid JSON Schema 2020-12."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from tests.cli.conftest import Repo
from tests.cli.schemas import SCHEMAS, validate


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_each_committed_schema_is_valid_json_schema(path: Path) -> None:
    Draft202012Validator.check_schema(json.loads(path.read_text()))


def _json(repo: Repo, *args: str, code: int = 0) -> dict[str, Any]:
    result = repo.run(*args, "--format", "json")
    assert result.code == code, result.output
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    assert document["format_version"] == 1
    return document


def test_a_schema_rejects_a_document_of_the_wrong_shape() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate("live", {"format_version": 1, "ok": True, "total": 0})


def test_validate_json_matches_its_schema(repo: Repo) -> None:
    validate("validate", _json(repo, "validate"))


def test_validate_errors_match_the_error_schema(repo: Repo) -> None:
    (repo.users / "bad@example.com.yaml").write_text("api_user: bad@example.com\nrole: boss\n")
    document = _json(repo, "validate", code=1)
    validate("error", document)
    assert document["problems"]


def test_plan_json_matches_its_schema(repo: Repo) -> None:
    repo.write("new@example.com", access={"smtp": True}, smtp_senders=["@new.example.com"])
    validate("plan", _json(repo, "plan", code=0))


def test_show_json_matches_the_plan_schema(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("plan", "--detailed-exitcode", "--out", "plan.json").code == 2
    validate("plan", _json(repo, "show", "plan.json"))


def test_live_json_matches_its_schema(repo: Repo) -> None:
    document = _json(repo, "live")
    validate("live", document)
    assert [u["api_user"] for u in document["api_users"]] == [repo.service.admin_user]


def test_status_json_matches_its_schema(repo: Repo) -> None:
    repo.write("new@example.com")
    document = _json(repo, "status")
    validate("status", document)
    drift = document["drift"]
    assert isinstance(drift, dict)
    assert drift["checked"] is True and drift["drift"] is True
    assert drift["summary"]["create"] == 1
    assert {"action": "create", "api_user": "new@example.com"} in drift["changes"]


def test_status_json_with_the_service_down_still_matches_and_says_why(repo: Repo) -> None:
    env = repo.env() | {"RECONCILER_API_URL": "http://127.0.0.1:9/api/v2", "RECONCILER_RETRIES": "0"}
    result = repo.run("status", "--format", "json", env=env)
    assert result.code == 1
    document = json.loads(result.stdout)
    validate("status", document)
    assert document["ok"] is False and document["live"]["ok"] is False
    assert "cannot reach the service" in document["live"]["error"]


def test_import_json_matches_its_schema(repo: Repo) -> None:
    with repo.service.client() as client:
        from reconciler.secrets import ApiKey

        client.create_user("adopt@example.com", {"role": "normal"}, ApiKey("k1abcdefgh"), {})
    document = _json(repo, "import")
    validate("import", document)
    results = {f["api_user"]: f["result"] for f in document["files"]}
    assert results["adopt@example.com"] == "created"


def test_an_error_under_json_matches_the_error_schema(repo: Repo) -> None:
    env = repo.env() | {"RECONCILER_API_URL": "http://127.0.0.1:9/api/v2", "RECONCILER_RETRIES": "0"}
    result = repo.run("live", "--format", "json", env=env)
    assert result.code == 1
    document = json.loads(result.stdout)
    validate("error", document)
    assert "cannot reach the service" in document["error"]


def test_history_json_matches_its_schema(repo: Repo) -> None:
    repo.write("new@example.com")
    assert repo.run("apply", "--auto-approve").code == 0
    document = _json(repo, "history")
    validate("history", document)
    operations = document["operations"]
    assert isinstance(operations, list)
    assert any(
        (op["action"], op["api_user"], op["source"]) == ("create", "new@example.com", "reconciler")
        for op in operations
    )


def test_status_json_reports_the_service_lease_without_its_token(repo: Repo) -> None:
    with repo.service.client() as client:
        request = {"holder": "ci", "host": "runner", "pid": 7, "command": "apply", "ttl_seconds": 60}
        lease = client.acquire_lease("reconcile", request)
    document = _json(repo, "status")
    validate("status", document)
    held = document["lease"]
    assert isinstance(held, dict)
    assert (held["held"], held["holder"], held["command"]) == (True, "ci", "apply")
    assert lease.token is not None and lease.token.get_secret_value() not in json.dumps(document)


MAIL_ENV = {
    "RECONCILER_MAIL_FILE_GROUP": "root",
    "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
    "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
}


@pytest.mark.parametrize("check", [True, False], ids=["check", "write"])
def test_render_json_matches_its_schema(repo: Repo, tmp_path: Path, check: bool) -> None:
    repo.write("smtp@example.com", access={"smtp": True})
    args = ["render", "--mail-dir", str(tmp_path / "mail"), "--no-reload", "--format", "json"]
    result = repo.run(*args, *(["--check"] if check else []), env=repo.env() | MAIL_ENV)
    assert result.code == (2 if check else 0), result.output
    document = json.loads(result.stdout)
    validate("render", document)
    assert document["check"] is check
    assert "postfix/sasl_passwd" in document["changed"]
    assert document["hashes"] == (0 if check else 1)


def test_status_json_lists_the_gateways_as_pinned(repo: Repo) -> None:
    report = {
        "commit": "0" * 40,
        "desired_digest": "f" * 64,  # not this checkout's users/
        "rendered_at": "2026-11-30T12:00:00Z",
        "result": "ok",
        "smtp_users": 3,
        "version": "0.1.0",
    }
    with repo.service.client() as client:
        client.report_gateway("mx1", report)
    document = _json(repo, "status")
    validate("status", document)
    [mx1] = document["gateways"]
    assert (mx1["name"], mx1["result"], mx1["behind"]) == ("mx1", "ok", True)
    assert {"commit", "desired_digest", "reported_at"} <= set(mx1)


def test_a_usage_error_after_format_json_is_a_json_error(repo: Repo) -> None:
    result = repo.run("plan", "--detailed-exitcode", "--format", "json", "--allow-deletes", "-1")
    assert result.code == 1
    document = json.loads(result.stdout)
    validate("error", document)
    assert "--allow-deletes" in document["error"]
