"""`reconciler import` against a service managed by hand (no reconciler annotations), then `plan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.importer import env_var_names, new_document, update_document
from reconciler.model import LiveUser
from reconciler.secrets import ApiKey
from reconciler.yamlfile import parse_mapping
from tests.fixtures.service import new_key
from tests.ops.conftest import Repo

SEEDED = 50


def _attributes(i: int) -> dict[str, Any]:
    """A spread of what consoles produce: SMTP with and without senders, locked, admins, no
    description, other time zones, own-data-only readers."""
    smtp = i % 2 == 0
    attributes: dict[str, Any] = {
        "role": "admin" if i % 10 == 0 else "normal",
        "operation": i % 3 == 0,
        "access": {"http_api": i % 4 != 1, "smtp": smtp, "own_data_only": i % 4 == 2},
        "timezone": ("Asia/Tokyo", "UTC", "Europe/London")[i % 3],
        "locked": i % 7 == 3,
        "description": None if i % 5 == 0 else f"app {i}: owned by team {i % 4}",
    }
    if smtp and i % 4 == 0:
        attributes["smtp_senders"] = [f"app{i:02d}@example.com", f"@app{i:02d}.example.com"]
    return attributes


def seed_console_users(repo: Repo, count: int = SEEDED) -> dict[str, str]:
    """Users created behind the reconciler's back; returns api_user -> key."""
    keys = {}
    with repo.service.client() as client:
        for i in range(count):
            name = f"app{i:02d}@example.com"
            keys[name] = new_key()
            client.create_user(name, _attributes(i), ApiKey(keys[name]), {})
    return keys


@pytest.fixture
def empty_repo(repo: Repo) -> Repo:
    repo.remove(repo.service.admin_user)
    repo.keys.clear()
    return repo


def test_import_then_plan_shows_no_change(empty_repo: Repo) -> None:
    repo = empty_repo
    seed_console_users(repo)
    imported = repo.run("import")
    assert imported.code == 0, imported.output
    assert len(list(repo.users.glob("*.yaml"))) == SEEDED + 1  # and the admin
    assert "APP07_EXAMPLE_COM_API_KEY" in imported.stdout
    assert repo.run("validate").code == 0
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 0, planned.output
    # Never a bare "No changes": the keys were not there, and the plan says so.
    assert f"No changes in what could be checked; {SEEDED + 1} key checks skipped." in planned.stdout
    assert "app07@example.com: environment variable APP07_EXAMPLE_COM_API_KEY is not set" in planned.stdout


def test_import_with_keys_set_shows_only_first_key_records_then_converges(empty_repo: Repo) -> None:
    repo = empty_repo
    keys = seed_console_users(repo, 6)
    assert repo.run("import").code == 0
    keys[repo.service.admin_user] = repo.service.admin_key
    names = env_var_names(keys)
    env = repo.env() | {names[user]: key for user, key in keys.items()}
    planned = repo.run("plan", "--detailed-exitcode", "--format", "json", env=env)
    assert planned.code == 2
    changes = json.loads(planned.stdout)["changes"]
    assert {c["action"] for c in changes} == {"update"}
    assert {c["key_reason"] for c in changes} == {"not set by the reconciler yet"}
    assert all(c["fields"] == [] for c in changes)
    assert repo.run("apply", "--auto-approve", env=env).code == 0
    assert repo.run("plan", "--detailed-exitcode", env=env).code == 0


def test_import_never_overwrites_without_force(empty_repo: Repo) -> None:
    repo = empty_repo
    seed_console_users(repo, 3)
    path = repo.users / "app01@example.com.yaml"
    mine = "# mine\napi_user: app01@example.com\napi_key:\n  from_env: MINE\nrole: admin\n"
    path.write_text(mine)
    result = repo.run("import")
    assert result.code == 0
    assert path.read_text() == mine
    assert "kept" in result.stdout
    assert "--force" in result.stdout


def test_force_updates_through_a_round_trip_keeping_comments_and_order(empty_repo: Repo) -> None:
    repo = empty_repo
    seed_console_users(repo, 3)
    path = repo.users / "app00@example.com.yaml"
    path.write_text(
        "# Owned by team payments: ask #payments before changing.\n"
        "api_user: app00@example.com\n"
        "role: normal   # should be admin?\n"
        "api_key:\n"
        "  from_file: ../secrets/app00.key  # rotated quarterly\n"
        "smtp_senders:\n"
        "  - app00@example.com  # the invoices\n"
        "  - '@app00.example.com'\n"
    )
    assert repo.run("import", "--force").code == 0
    text = path.read_text()
    assert text.startswith("# Owned by team payments: ask #payments before changing.\napi_user:")
    assert "# should be admin?" in text
    assert "role: admin" in text
    assert "from_file: ../secrets/app00.key  # rotated quarterly" in text
    assert "app00@example.com  # the invoices" in text
    keys = [line.split(":")[0] for line in text.splitlines() if line[:1].isalpha()]
    existing = [k for k in keys if k in {"api_user", "role", "api_key", "smtp_senders"}]
    assert existing == ["api_user", "role", "api_key", "smtp_senders"]  # the file's order, kept
    assert set(keys) >= {"operation", "access", "timezone", "locked", "description"}
    again = repo.run("import", "--force")
    assert path.read_text() == text
    assert "unchanged" in again.stdout


def test_new_files_point_editors_at_the_schema(empty_repo: Repo) -> None:
    repo = empty_repo
    seed_console_users(repo, 1)
    assert repo.run("import").code == 0
    text = (repo.users / "app00@example.com.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schema/user.schema.json"
    assert "from_env: APP00_EXAMPLE_COM_API_KEY" in text


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["billing@example.com"], ["BILLING_EXAMPLE_COM_API_KEY"]),
        (["a.b@x.io", "a-b@x.io"], ["A_B_X_IO_2_API_KEY", "A_B_X_IO_API_KEY"]),
        (["1app@x.io"], ["KEY_1APP_X_IO_API_KEY"]),
    ],
)
def test_env_var_names_are_predictable_and_unique(names: list[str], expected: list[str]) -> None:
    assert [env_var_names(names)[n] for n in names] == expected


def test_import_refuses_api_users_that_are_not_email_addresses(empty_repo: Repo, tmp_path: Path) -> None:
    """A compromised or buggy service answering with a path must not write outside users/."""
    repo = empty_repo
    seed_console_users(repo, 2)
    outside = repo.root / "outside"
    hostile = [
        "../escaped",  # users/../escaped.yaml
        "../../escaped@example.com",
        str(outside / "absolute"),  # users / "/abs..." is the absolute path itself
        "sub/dir@example.com",
        "evil@example.com\nrole: admin",
    ]
    store = repo.service.embedded.store
    for name in hostile:
        store.create(name, _attributes(1), new_key(), {})
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    result = repo.run("import")
    assert result.code == 1, result.output
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert written, "the valid users are still imported"
    assert all(p.parent == repo.users for p in written), sorted(map(str, written))
    assert {p.name for p in written} == {
        "admin@example.com.yaml",
        "app00@example.com.yaml",
        "app01@example.com.yaml",
    }
    assert "5 live user(s) were NOT imported" in result.stderr
    for name in hostile:
        assert repr(name) in result.stderr
    assert "\nrole: admin" not in result.output
    assert repo.run("validate").code == 0


def test_imported_paths_must_stay_in_users(tmp_path: Path) -> None:
    from reconciler.errors import ReconcilerError
    from reconciler.workflows.adopt import _target

    users = tmp_path / "users"
    users.mkdir()
    assert _target(users, "a@example.com.yaml") == users / "a@example.com.yaml"
    for name in ("../a@example.com.yaml", "/etc/a@example.com.yaml", "x/a@example.com.yaml", ".."):
        with pytest.raises(ReconcilerError, match="outside"):
            _target(users, name)


def test_force_keeps_the_files_casing_of_api_user(empty_repo: Repo) -> None:
    repo = empty_repo
    seed_console_users(repo, 1)  # app00@example.com on the service
    path = repo.users / "App00@example.com.yaml"
    path.write_text("api_user: App00@example.com\napi_key:\n  from_env: APP00_KEY\nrole: normal\n")
    result = repo.run("import", "--force")
    assert result.code == 0, result.output
    text = path.read_text()
    assert "api_user: App00@example.com\n" in text  # not the service's app00@example.com
    assert "role: admin" in text  # the other settings are updated
    validated = repo.run("validate")
    assert validated.code == 0, validated.output


def test_update_keeps_api_user_unless_it_names_someone_else() -> None:
    live = LiveUser(api_user="billing@example.com", role="normal")
    same, _ = update_document(
        "api_user: Billing@Example.com\n", live, "B_API_KEY", "Billing@example.com.yaml"
    )
    assert same.startswith("api_user: Billing@Example.com\n")
    for written in ("api_user: other@example.com\n", "role: normal\n"):
        fixed, _ = update_document(written, live, "B_API_KEY", "Billing@example.com.yaml")
        assert "api_user: Billing@example.com\n" in fixed  # the file's name, which validate checks


AMBIGUOUS = [
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "true",
    "False",
    "null",
    "~",
    "012",
    "1_000",
    "1:30",
    "1.5",
    ".inf",
    "2024-01-31",
]


@pytest.mark.parametrize("description", AMBIGUOUS)
def test_new_files_quote_strings_yaml_1_1_would_misread(description: str) -> None:
    yaml11 = pytest.importorskip("yaml")  # PyYAML: a YAML 1.1 reader, as many other tools are
    live = LiveUser(api_user="a@example.com", role="normal", description=description)
    text = new_document(live, "A_API_KEY")
    assert f'description: "{description}"\n' in text
    assert yaml11.safe_load(text)["description"] == description
    assert load_mapping_text(text)["description"] == description


@pytest.mark.parametrize("plain", ["A test user", "owned by team 1", "yes please", "1.2.3", "Asia/Tokyo"])
def test_ordinary_strings_stay_plain(plain: str) -> None:
    text = new_document(LiveUser(api_user="a@example.com", role="normal", description=plain), "A_API_KEY")
    assert f"description: {plain}\n" in text


def test_force_quotes_a_plain_lookalike_and_keeps_other_quotes() -> None:
    live = LiveUser(api_user="a@example.com", role="normal", timezone="UTC", description="off")
    existing = (
        "api_user: a@example.com\napi_key: {from_env: A}\nrole: normal\ntimezone: 'UTC'\ndescription: off\n"
    )
    updated, _ = update_document(existing, live, "A_API_KEY", "a@example.com.yaml")
    assert "timezone: 'UTC'\n" in updated  # already right, written the file's way
    assert 'description: "off"\n' in updated
    again, _ = update_document(updated, live, "A_API_KEY", "a@example.com.yaml")
    assert again == updated


def test_imported_lookalikes_plan_no_change(empty_repo: Repo) -> None:
    repo = empty_repo
    with repo.service.client() as client:
        client.create_user("yes@example.com", {"role": "normal", "description": "no"}, ApiKey(new_key()), {})
    assert repo.run("import").code == 0
    assert 'description: "no"\n' in (repo.users / "yes@example.com.yaml").read_text()
    planned = repo.run("plan", "--detailed-exitcode")
    assert planned.code == 0, planned.output


def load_mapping_text(text: str) -> dict[str, Any]:
    return parse_mapping(text, "a@example.com.yaml").data
