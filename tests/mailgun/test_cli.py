"""The issue's proofs through the CLI, where a user acts: `plan` refuses a declared `role:` with
file:line; a re-key is one PUT and the next run sends none; `import` then `plan` is empty except for
keys that cannot be compared yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler_service.standins.mailgun import MailgunStandIn
from tests.fixtures.cli import CliResult, run_main
from tests.mailgun.conftest import ACCOUNT_KEY, DOMAINS

# Verified passing on a local merge of core's and kit's branches with: role optional in UserSpec,
# the last-admin guard skipped for a backend that stores no role, the backend wrapped in kit's state
# store (with_state), import writing importer.written_paths(...). Strict: remove once they land.
NEEDS_SEAM = "plan/apply over the seam, an optional role, no last-admin guard without roles"
NEEDS_STATE = pytest.mark.xfail(strict=True, reason=NEEDS_SEAM + ", the state-store wrapper")
NEEDS_IMPORT = pytest.mark.xfail(
    strict=True, reason=NEEDS_SEAM + ", import of written_paths, keys without recorded state skipped"
)
KEYS = {"APP_KEY": "AppKey0001", "APP_KEY_2": "AppKey0002"}


def _cli(standin: MailgunStandIn, root: Path, *args: str, **keys: str) -> CliResult:
    env = {
        "RECONCILER_BACKEND": "mailgun",
        "RECONCILER_MAILGUN_API_URL": standin.url,
        "RECONCILER_MAILGUN_API_KEY_ENV": "MG_CLI_ACCOUNT_KEY",
        "MG_CLI_ACCOUNT_KEY": ACCOUNT_KEY,
        "RECONCILER_MAILGUN_DOMAINS": ",".join(DOMAINS),
        "RECONCILER_STATE_DIR": str(root / "state"),
        # Keyed fingerprints in the state store; nothing else derives the secret with Mailgun.
        "RECONCILER_FINGERPRINT_SECRET": "fingerprint-secret-of-the-test",
        **keys,
    }
    result = run_main([*args, "--users", str(root / "users")], env=env)
    for key in (*KEYS.values(), ACCOUNT_KEY):
        assert key not in result.output
    return result


def _user(root: Path, login: str, extra: str = "", env: str = "APP_KEY") -> Path:
    (root / "users").mkdir(exist_ok=True)
    path = root / "users" / f"{login}.yaml"
    path.write_text(f"api_user: {login}\napi_key: {{from_env: {env}}}\n{extra}")
    return path


def test_a_declared_role_is_refused_with_file_and_line(standin: MailgunStandIn, tmp_path: Path) -> None:
    path = _user(tmp_path, "app@mg.example.com", "role: normal\n")
    result = _cli(standin, tmp_path, "plan", APP_KEY=KEYS["APP_KEY"])
    assert result.code != 0, result.output
    assert f"{path}:3" in result.output and "role" in result.output, result.output
    assert standin.count("POST") == standin.count("PUT") == 0


@NEEDS_STATE
def test_a_rekey_sends_exactly_one_put_and_the_next_run_none(standin: MailgunStandIn, tmp_path: Path) -> None:
    _user(tmp_path, "app@mg.example.com")
    assert _cli(standin, tmp_path, "apply", "--auto-approve", APP_KEY=KEYS["APP_KEY"]).code == 0
    assert (standin.count("POST"), standin.count("PUT")) == (1, 0)
    assert _cli(standin, tmp_path, "apply", "--auto-approve", APP_KEY=KEYS["APP_KEY_2"]).code == 0
    assert standin.count("PUT") == 1
    assert standin.authenticate("app@mg.example.com", KEYS["APP_KEY_2"]) == "app@mg.example.com"
    assert _cli(standin, tmp_path, "apply", "--auto-approve", APP_KEY=KEYS["APP_KEY_2"]).code == 0
    assert (standin.count("POST"), standin.count("PUT")) == (1, 1)


@NEEDS_IMPORT
def test_import_then_plan_is_empty_except_keys_not_comparable_yet(
    standin: MailgunStandIn, tmp_path: Path, backend: object
) -> None:
    from reconciler.backend.mailgun import MailgunBackend
    from reconciler.secrets import ApiKey

    assert isinstance(backend, MailgunBackend)
    backend.users.create("app@mg.example.com", {}, ApiKey("AppKey0001"), {})
    backend.users.create("ops@eu.example.org", {}, ApiKey("OpsKey0002"), {})
    assert _cli(standin, tmp_path, "import").code == 0
    files = sorted(p.name for p in (tmp_path / "users").iterdir())
    assert files == ["app@mg.example.com.yaml", "ops@eu.example.org.yaml"]
    keys = {"APP_MG_EXAMPLE_COM_API_KEY": "AppKey0001", "OPS_EU_EXAMPLE_ORG_API_KEY": "OpsKey0002"}
    plan = _cli(standin, tmp_path, "plan", **keys)
    assert plan.code == 0, plan.output
    for login in ("app@mg.example.com", "ops@eu.example.org"):
        assert login in plan.output  # each key that cannot be compared yet is listed
