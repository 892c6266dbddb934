"""Importing from Mailgun: files with api_user and a from_env reference only (Mailgun stores no
other field and never returns a password)."""

from __future__ import annotations

from pathlib import Path

from reconciler.backend.mailgun import CAPABILITIES, MailgunBackend
from reconciler.importer import import_users, written_paths
from reconciler.secrets import ApiKey
from reconciler_service.standins.mailgun import MailgunStandIn


def test_imported_files_hold_the_login_and_a_reference_and_no_key(
    backend: MailgunBackend, standin: MailgunStandIn, tmp_path: Path
) -> None:
    backend.users.create("app@mg.example.com", {}, ApiKey("AppKey0001"), {})
    backend.users.create("ops@eu.example.org", {}, ApiKey("OpsKey0002"), {})
    files = import_users(backend.users.list(), {}, written_paths(CAPABILITIES.fields, CAPABILITIES.fixed))
    texts = {f.file_name: f.text for f in files}
    assert sorted(texts) == ["app@mg.example.com.yaml", "ops@eu.example.org.yaml"]
    app = texts["app@mg.example.com.yaml"]
    assert "api_user: app@mg.example.com" in app and "from_env: APP_MG_EXAMPLE_COM_API_KEY" in app
    for text in texts.values():
        assert "AppKey0001" not in text and "OpsKey0002" not in text
        assert not any(word in text for word in ("role", "timezone", "locked", "description", "http_api"))
        assert "access:\n  smtp: true\n" in text  # the fixed value the gateway needs, nothing else
    assert [f.key_ref for f in files] == ["env APP_MG_EXAMPLE_COM_API_KEY", "env OPS_EU_EXAMPLE_ORG_API_KEY"]


def test_without_stored_fields_the_import_is_unchanged_for_other_backends(backend: MailgunBackend) -> None:
    backend.users.create("app@mg.example.com", {}, ApiKey("AppKey0001"), {})
    (full,) = import_users(backend.users.list(), {})
    assert "timezone:" in full.text and "access:" in full.text


def test_written_paths_add_fixed_values_that_differ_from_the_defaults() -> None:
    assert written_paths(CAPABILITIES.fields, CAPABILITIES.fixed) == {"access.smtp"}
