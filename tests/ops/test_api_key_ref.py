"""`api_key_ref` in reconciler.yaml: the reconciler's own key read from an environment variable, a
file or an age ciphertext, when RECONCILER_API_KEY is not set. Resolved only by the commands that
talk to the service, so `validate` still needs no secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pyrage import x25519

from reconciler import agekeys
from tests.ops.conftest import Repo


def _without_api_key(repo: Repo, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in repo.env().items() if k != "RECONCILER_API_KEY"}
    return env | extra  # the fingerprint secret stays: it never came from the key


def _config(repo: Repo, ref_yaml: str) -> Path:
    path = repo.root / "reconciler.yaml"
    path.write_text(f"# the reconciler's own key\napi_key_ref:\n{ref_yaml}")
    return path


def _by_env(repo: Repo) -> dict[str, str]:
    _config(repo, "  from_env: ADMIN_REF_KEY\n")
    return _without_api_key(repo, ADMIN_REF_KEY=repo.service.admin_key)


def _by_file(repo: Repo) -> dict[str, str]:
    secrets = repo.root / "secrets"
    secrets.mkdir()
    (secrets / "admin.key").write_text(repo.service.admin_key + "\n")
    (secrets / "admin.key").chmod(0o600)
    _config(repo, "  from_file: secrets/admin.key\n")  # relative to reconciler.yaml, not the cwd
    return _without_api_key(repo)


def _by_age(repo: Repo) -> dict[str, str]:
    identity = x25519.Identity.generate()
    armored = agekeys.encrypt(repo.service.admin_key, [str(identity.to_public())])
    body = "".join(f"    {line}\n" for line in armored.splitlines())
    _config(repo, f"  age: |\n{body}")
    return _without_api_key(repo, **{agekeys.IDENTITY_ENV: str(identity)})


@pytest.mark.parametrize("setup", [_by_env, _by_file, _by_age], ids=["from_env", "from_file", "age"])
def test_live_plan_and_apply_authenticate_with_the_ref(
    repo: Repo, setup: Callable[[Repo], dict[str, str]]
) -> None:
    env = setup(repo)
    listed = repo.run("live", "--format", "json", env=env)
    assert listed.code == 0, listed.output
    assert [u["api_user"] for u in json.loads(listed.stdout)["api_users"]] == [repo.service.admin_user]

    repo.write("a@example.com", access={"http_api": True})
    env |= {repo.var("a@example.com"): repo.keys["a@example.com"]}
    assert repo.run("plan", "--detailed-exitcode", env=env).code == 2
    applied = repo.run("apply", "--auto-approve", env=env)
    assert applied.code == 0, applied.output
    assert "a@example.com" in repo.live()
    assert repo.run("plan", "--detailed-exitcode", env=env).code == 0
    for secret in env.values():
        if secret.startswith("AGE-SECRET-KEY-"):
            assert secret not in listed.output + applied.output


def test_relative_key_file_is_found_from_any_directory(repo: Repo, tmp_path: Path) -> None:
    from tests.ops.conftest import run_cli

    env = _by_file(repo)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(["live", "--users", str(repo.users)], env, cwd=elsewhere)
    assert result.code == 0, result.output
    assert repo.service.admin_user in result.stdout


def test_an_unresolvable_ref_names_reconciler_yaml_and_its_line(repo: Repo) -> None:
    _config(repo, "  from_env: ADMIN_REF_KEY\n")
    result = repo.run("live", env=_without_api_key(repo))
    assert result.code == 1
    assert "reconciler.yaml:3: api_key_ref: environment variable ADMIN_REF_KEY is not set" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_key_behind_the_ref_is_not_echoed(repo: Repo) -> None:
    _config(repo, "  from_env: ADMIN_REF_KEY\n")
    result = repo.run("live", env=_without_api_key(repo, ADMIN_REF_KEY="Wrongkey€123"))
    assert result.code == 1
    assert "reconciler.yaml:3: api_key_ref: the key from env ADMIN_REF_KEY is not valid" in result.stderr
    assert "Wrongkey" not in result.output


def test_validate_does_not_need_the_ref(repo: Repo) -> None:
    _config(repo, "  from_env: ADMIN_REF_KEY\n")
    env = {k: v for k, v in _without_api_key(repo).items() if not k.startswith("KEY_")}
    result = repo.run("validate", env=env)
    assert result.code == 0, result.output


def test_reconciler_api_key_wins_over_the_ref(repo: Repo) -> None:
    _config(repo, "  from_env: ADMIN_REF_KEY\n")  # unset: resolving it would fail
    result = repo.run("live", env=repo.env())
    assert result.code == 0, result.output
