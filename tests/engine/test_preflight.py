"""What would fail only after the service changed is checked before the first write: the state
directory, and for reconcile the mail step's directory and the keys of the users with mail lines.
Each refusal is exit 1 with one clear message, and the real embedded service is left unchanged."""

from __future__ import annotations

from pathlib import Path

from tests.engine.conftest import Repo


def _service_users(repo: Repo) -> list[str]:
    return sorted(repo.live())


def test_a_state_dir_that_is_a_file_stops_apply_before_any_write(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com")
    (tmp_path / "not-a-dir").write_text("")
    before = _service_users(repo)
    result = repo.run("apply", "--auto-approve", env=repo.env() | {"RECONCILER_STATE_DIR": "not-a-dir"})
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot write the audit log in the state directory: not-a-dir: not a directory "
        "(setting state_dir, RECONCILER_STATE_DIR)"
    ]
    assert _service_users(repo) == before


def test_a_state_dir_below_a_file_names_the_reason(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com")
    (tmp_path / "not-a-dir").write_text("")
    result = repo.run("apply", "--auto-approve", env=repo.env() | {"RECONCILER_STATE_DIR": "not-a-dir/state"})
    assert result.code == 1
    assert "not-a-dir/state: Not a directory" in result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert "a@example.com" not in repo.live()


def test_reconcile_with_a_mail_dir_that_is_a_file_changes_nothing(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com", access={"smtp": True})
    mail_file = tmp_path / "mail"
    mail_file.write_text("")
    env = repo.env() | {"RECONCILER_MAIL_DIR": str(mail_file), "RECONCILER_MAIL_CHECKS": "skip"}
    result = repo.run("reconcile", "--auto-approve", "--no-reload", env=env)
    assert result.code == 1
    assert f"cannot write to the mail directory {mail_file}" in result.stderr
    assert "a@example.com" not in repo.live()
    assert mail_file.read_text() == ""


def test_reconcile_without_a_mail_users_key_changes_nothing(repo: Repo, tmp_path: Path) -> None:
    # b's key is declared for the mail files only (no HTTP access to check), and it is not here:
    # the gateway could not be rendered, so the service must not be changed either.
    repo.write("a@example.com", access={"smtp": True})
    repo.write("b@example.com", access={"smtp": True})
    env = repo.env() | {"RECONCILER_MAIL_DIR": str(tmp_path / "mail"), "RECONCILER_MAIL_CHECKS": "skip"}
    del env[repo.var("b@example.com")]
    result = repo.run("reconcile", "--auto-approve", "--target", "a@example.com", "--no-reload", env=env)
    assert result.code == 1
    var = repo.var("b@example.com")
    assert (
        f"users/b@example.com.yaml:3: api_key.from_env: environment variable {var} is not set"
        in result.stderr
    )
    assert "a@example.com" not in repo.live()
    assert not (tmp_path / "mail").exists()
