"""Long work shows a progress line on a terminal (stderr) and nothing extra anywhere else."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.secrets import ApiKey
from tests.cli.conftest import Repo
from tests.cli.process import run_process
from tests.cli.terminal import run_with_stderr_on_terminal

RENDER_ENV = {
    "RECONCILER_MAIL_FILE_GROUP": "root",
    "RECONCILER_FINGERPRINT_SECRET": "s3cret-fingerprint-secret-of-the-tests-01",
    "RECONCILER_HASH_SCHEME": "BLF-CRYPT",
}


def _smtp_users(repo: Repo, count: int) -> None:
    for i in range(count):
        repo.write(f"u{i}@example.com", access={"smtp": True})


def test_render_shows_hashing_progress_on_a_terminal(repo: Repo, tmp_path: Path) -> None:
    _smtp_users(repo, 3)
    args = ["render", "--mail-dir", str(tmp_path / "mail"), "--no-reload", "--format", "json"]
    code, stdout, stderr = run_with_stderr_on_terminal(args, cwd=repo.root, env=repo.env() | RENDER_ENV)
    assert code == 0, stderr
    assert "\rHashing keys: 1" in stderr  # redrawn in place (at most every 0.1 s) ...
    assert stderr.endswith("\r\x1b[K")  # ... and erased when done
    assert json.loads(stdout)["hashes"] == 3  # the progress never reaches stdout


def test_render_prints_nothing_extra_when_stderr_is_not_a_terminal(repo: Repo, tmp_path: Path) -> None:
    _smtp_users(repo, 3)
    args = ["render", "--mail-dir", str(tmp_path / "mail"), "--no-reload", "--format", "json"]
    result = run_process(repo, *args, env=repo.env() | RENDER_ENV)
    assert result.code == 0, result.output
    assert result.stderr == ""


def test_import_shows_progress_on_a_terminal_only(repo: Repo) -> None:
    with repo.service.client() as client:
        for i in range(20):
            client.create_user(f"imp{i:02}@example.com", {"role": "normal"}, ApiKey("k1abcdefgh"), {})
    for path in repo.users.iterdir():
        path.unlink()
    code, stdout, stderr = run_with_stderr_on_terminal(["import"], cwd=repo.root, env=repo.env())
    assert code == 0, stderr
    assert "Importing: 21/21" in stderr
    assert "Importing" not in stdout
    quiet = run_process(repo, "import", "--format", "json")
    assert quiet.code == 0 and "Importing" not in quiet.output


def test_apply_prints_no_progress_when_not_on_a_terminal(repo: Repo) -> None:
    for i in range(20):
        repo.write(f"u{i:02}@example.com")
    result = run_process(repo, "apply", "--auto-approve")
    assert result.code == 0, result.output
    assert "Applying" not in result.output
    assert "\r" not in result.output


def test_reconcile_shows_hashing_progress_on_a_terminal_too(repo: Repo, tmp_path: Path) -> None:
    _smtp_users(repo, 3)
    args = [
        "reconcile",
        "--auto-approve",
        "--mail-dir",
        str(tmp_path / "mail"),
        "--no-reload",
        "--format",
        "json",
    ]
    code, stdout, stderr = run_with_stderr_on_terminal(args, cwd=repo.root, env=repo.env() | RENDER_ENV)
    assert code == 0, stderr
    assert "\rHashing keys: 1" in stderr
    assert json.loads(stdout)["mail"]["hashes"] == 3
