"""The GitHub workflows and the composite action, checked offline: schema, pinned actions, and the
action's script run for real (bash) against the embedded service."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.output import MARKDOWN_MARKER
from tests.ops.conftest import Repo

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action.yml"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+$")  # owner/name@vX.Y.Z, never @main or @v4


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    # The built-in vendor schemas ship inside check-jsonschema: no network is needed.
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_four_flows_exist() -> None:
    triggers = {path.stem: _load(path)["on"] for path in WORKFLOWS}
    assert "pull_request" in triggers["pull-request"]
    assert triggers["apply"]["push"]["branches"] == ["main"]
    assert "schedule" in triggers["drift"]
    assert set(triggers["on-call"]["workflow_dispatch"]["inputs"]) == {"target", "dry_run"}


def test_workflows_match_the_github_schema() -> None:
    done = _check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_action_matches_the_github_schema() -> None:
    done = _check_jsonschema("vendor.github-actions", ACTION)
    assert done.returncode == 0, done.stdout + done.stderr


def _uses(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return found + [u for value in node.values() for u in _uses(value)]
    if isinstance(node, list):
        return [u for item in node for u in _uses(item)]
    return []


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_actions_are_pinned_by_version(path: Path) -> None:
    uses = _uses(_load(path))
    assert uses
    assert [u for u in uses if u != "./" and not PINNED.match(u)] == []


def test_apply_runs_never_overlap() -> None:
    apply = _load(ROOT / ".github" / "workflows" / "apply.yml")
    assert apply["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    assert "reconciler-apply" in _load(ROOT / ".github" / "workflows" / "on-call.yml")["concurrency"]["group"]


def test_the_pr_comment_is_found_by_the_plan_marker() -> None:
    assert MARKDOWN_MARKER in ACTION.read_text()


def test_pre_commit_hook_runs_validate() -> None:
    (hook,) = _load(ROOT / ".pre-commit-hooks.yaml")
    assert hook["entry"] == "reconciler validate"
    assert hook["pass_filenames"] is False


def _run_step_script() -> str:
    steps = _load(ACTION)["runs"]["steps"]
    return next(step["run"] for step in steps if step.get("id") == "run")


def _run_action(repo: Repo, command: str, tmp: Path, **env: str) -> tuple[int, dict[str, str], str, str]:
    outputs, summary = tmp / "output", tmp / "summary"
    full_env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "RUNNER_TEMP": str(tmp),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "COMMAND": command,
        "USERS_DIR": str(repo.users),
        "TARGETS": "",
        "EXTRA_ARGS": "",
        "KEY_SECRETS": "",
        **env,
    }
    done = subprocess.run(
        ["bash", "-e", "-c", _run_step_script()],
        env=full_env,
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for secret in repo.secrets():
        assert secret not in done.stdout + done.stderr + summary.read_text()
    pairs = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return done.returncode, pairs, done.stdout + done.stderr, summary.read_text()


def test_action_plan_reports_pending_changes_without_failing(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com", access={"smtp": True})
    env = {k: v for k, v in repo.env().items() if k != "RECONCILER_API_KEY"}
    # The reconciler's own key arrives only through key-secrets, filtered by name.
    secrets = {"RECONCILER_API_KEY": repo.service.admin_key, "GITHUB_TOKEN": "ghs_not_for_reconciler"}
    code, outputs, stdout, summary = _run_action(
        repo, "plan", tmp_path, **env, KEY_SECRETS=json.dumps(secrets), TARGETS="a@*,admin@*"
    )
    assert code == 0, stdout
    assert outputs["exit-code"] == "2"
    assert outputs["changes"] == "true"
    assert summary.startswith(MARKDOWN_MARKER)
    assert "a@example.com" in summary
    assert json.loads(Path(outputs["plan-json"]).read_text())["format_version"] == 1


def test_action_validate_and_apply(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com", access={"smtp": True})
    code, outputs, _, _ = _run_action(repo, "validate", tmp_path, **repo.env())
    assert (code, outputs["exit-code"]) == (0, "0")
    code, outputs, _, summary = _run_action(repo, "apply", tmp_path, **repo.env())
    assert (code, outputs["exit-code"], outputs["changes"]) == (0, "0", "false")
    assert "changes applied" in summary
    code, outputs, _, _ = _run_action(repo, "plan", tmp_path, **repo.env())
    assert outputs["exit-code"] == "0"


def test_action_passes_errors_on_as_exit_code_1(repo: Repo, tmp_path: Path) -> None:
    (repo.users / "broken@example.com.yaml").write_text("api_user: broken@example.com\n")
    code, outputs, _, _ = _run_action(repo, "plan", tmp_path, **repo.env())
    assert (code, outputs["exit-code"], outputs["changes"]) == (0, "1", "false")


def test_action_validate_annotates_the_pull_request(repo: Repo, tmp_path: Path) -> None:
    (repo.users / "broken@example.com.yaml").write_text("api_user: broken@example.com\nrole: root\n")
    env = repo.env() | {"GITHUB_ACTIONS": "true"}
    code, outputs, log, _ = _run_action(repo, "validate", tmp_path, **env)
    assert (code, outputs["exit-code"]) == (0, "1")
    assert "::error file=" in log


def test_the_adoption_snippet_in_the_docs_is_a_valid_workflow(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "gitops.md").read_text()
    match = re.search(r"```yaml\n(on: .*?)```", docs, re.S)
    assert match is not None
    snippet = tmp_path / "reconciler.yml"
    snippet.write_text(match.group(1))
    assert len(match.group(1).splitlines()) <= 15
    done = _check_jsonschema("vendor.github-workflows", snippet)
    assert done.returncode == 0, done.stdout + done.stderr
