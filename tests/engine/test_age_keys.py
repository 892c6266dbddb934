"""Keys committed encrypted with age: `api_key: {age: ...}` through validate, plan and apply."""

from __future__ import annotations

from pyrage import x25519
from ruamel.yaml import YAML

from reconciler.agekeys import encrypt
from tests.engine.conftest import Repo
from tests.fixtures.service import new_key


def _write_age_user(repo: Repo, name: str, key: str, recipient: str) -> None:
    data = {
        "api_user": name,
        "api_key": {"age": encrypt(key, [recipient])},
        "role": "normal",
        "access": {"http_api": True},
    }
    with (repo.users / f"{name}.yaml").open("w") as handle:
        YAML().dump(data, handle)
    repo.keys[name] = key  # so every CLI output is checked for it


def test_age_encrypted_key_is_applied_and_works(repo: Repo) -> None:
    identity = x25519.Identity.generate()
    key = new_key()
    _write_age_user(repo, "sealed@example.com", key, str(identity.to_public()))
    assert repo.run("validate", env={}).code == 0  # no identity needed to validate
    env = repo.env() | {"RECONCILER_AGE_IDENTITY": str(identity)}
    result = repo.run("apply", "--auto-approve", env=env)
    assert result.code == 0, result.output
    with repo.service.client("sealed@example.com", key) as client:
        assert client.get_user("sealed@example.com") is not None
    assert repo.run("plan", "--detailed-exitcode", env=env).code == 0


def test_wrong_age_identity_applies_nothing_and_names_file_and_line(repo: Repo) -> None:
    right, wrong = x25519.Identity.generate(), x25519.Identity.generate()
    _write_age_user(repo, "sealed@example.com", new_key(), str(right.to_public()))
    env = repo.env() | {"RECONCILER_AGE_IDENTITY": str(wrong)}
    result = repo.run("apply", "--auto-approve", env=env)
    assert result.code == 1
    assert "users/sealed@example.com.yaml:3: api_key.age: cannot decrypt" in result.stderr
    assert "not encrypted to any of the identities" in result.stderr
    assert str(wrong) not in result.output
    assert "sealed@example.com" not in repo.live()


def test_missing_age_identity_is_reported_before_anything_is_applied(repo: Repo) -> None:
    _write_age_user(repo, "sealed@example.com", new_key(), str(x25519.Identity.generate().to_public()))
    repo.write("plain@example.com")
    result = repo.run("apply", "--auto-approve")
    assert result.code == 1
    assert "RECONCILER_AGE_IDENTITY" in result.stderr
    assert set(repo.live()) == {repo.service.admin_user}


def test_plan_with_a_wrong_age_identity_fails_instead_of_skipping(repo: Repo) -> None:
    right, wrong = x25519.Identity.generate(), x25519.Identity.generate()
    _write_age_user(repo, "sealed@example.com", new_key(), str(right.to_public()))
    result = repo.run("plan", "--detailed-exitcode", env=repo.env() | {"RECONCILER_AGE_IDENTITY": str(wrong)})
    assert result.code == 1
    assert "users/sealed@example.com.yaml:3: api_key.age: cannot decrypt" in result.stderr
    assert repo.run("plan", "--detailed-exitcode").code == 2  # no identity at all (a fork's PR): plan goes on
