"""The GitHub workflows and the composite action, checked offline: schema, pinned actions, and the
action's script run for real (bash) against the embedded service."""

from __future__ import annotations

import json
import os
import re
import shutil
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
# owner/name@<full commit sha> # vX.Y.Z: a tag can be moved to other code, a commit cannot.
PINNED = re.compile(r"^\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    # The built-in vendor schemas ship inside check-jsonschema: no network is needed.
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_five_flows_exist() -> None:
    triggers = {path.stem: _load(path)["on"] for path in WORKFLOWS}
    assert set(triggers["pull-request"]) == {"pull_request"}
    assert set(triggers["plan"]) == {"pull_request_target"}
    assert triggers["apply"]["push"]["branches"] == ["main"]
    assert "schedule" in triggers["drift"]
    on_call = set(triggers["on-call"]["workflow_dispatch"]["inputs"])
    assert on_call == {"target", "dry_run", "allow_deletes", "allow_locks"}


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
def test_actions_are_pinned_by_commit_with_the_version_in_a_comment(path: Path) -> None:
    assert _uses(_load(path))
    lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(- )?uses:", line)]
    assert [line for line in lines if not line.strip().endswith("uses: ./") and not PINNED.match(line)] == []


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
    return str(next(step["run"] for step in steps if step.get("id") == "run"))


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
        "KEY_SECRETS_SET": "false",
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
    # The keys arrive as the calling step's env: (each secret named there), nothing else.
    code, outputs, stdout, summary = _run_action(repo, "plan", tmp_path, **repo.env(), TARGETS="a@*,admin@*")
    assert code == 0, stdout
    assert outputs["exit-code"] == "2"
    assert outputs["changes"] == "true"
    assert outputs["validated"] == "true"
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
    code, outputs, _, summary = _run_action(repo, "plan", tmp_path, **repo.env())
    assert (code, outputs["exit-code"], outputs["changes"]) == (0, "1", "false")
    assert outputs["validated"] == "false"  # the comment then says "validate failed"
    assert "validate failed" in summary


def test_action_refuses_the_removed_key_secrets_input(repo: Repo, tmp_path: Path) -> None:
    path, log = _recording_reconciler(tmp_path)
    code, outputs, stdout, _ = _run_action(
        repo, "apply", tmp_path, **repo.env(), PATH=path, KEY_SECRETS_SET="true"
    )
    assert (code, outputs["exit-code"]) == (0, "1")
    assert "the key-secrets input was removed" in stdout
    assert _calls(log) == []  # nothing ran with the whole secrets context around


def test_with_the_removed_key_secrets_input_nothing_is_set_up_or_installed_before_the_refusal() -> None:
    # The whole secrets context would sit in the action's inputs: no third-party action or package
    # may run before the run step refuses.
    steps = _load(ACTION)["runs"]["steps"]
    before = steps[: next(i for i, step in enumerate(steps) if step.get("id") == "run")]
    assert before, "the action sets up Python and installs reconciler first"
    for step in before:
        assert step.get("if") == "inputs.key-secrets == ''", step["name"]


def test_action_validate_annotates_the_pull_request(repo: Repo, tmp_path: Path) -> None:
    (repo.users / "broken@example.com.yaml").write_text("api_user: broken@example.com\nrole: root\n")
    env = repo.env() | {"GITHUB_ACTIONS": "true"}
    code, outputs, log, _ = _run_action(repo, "validate", tmp_path, **env)
    assert (code, outputs["exit-code"]) == (0, "1")
    assert "::error file=" in log


def _doc_workflows() -> list[str]:
    docs = (ROOT / "docs" / "gitops.md").read_text()
    return re.findall(r"```yaml\n(name: .*?)```", docs, re.S)


def test_the_adoption_workflows_in_the_docs_are_valid(tmp_path: Path) -> None:
    snippets = _doc_workflows()
    assert len(snippets) == 2
    for number, text in enumerate(snippets):
        (tmp_path / f"adopt-{number}.yml").write_text(text)
    done = _check_jsonschema("vendor.github-workflows", *sorted(tmp_path.glob("*.yml")))
    assert done.returncode == 0, done.stdout + done.stderr


def _recording_reconciler(tmp: Path) -> tuple[str, Path]:
    """A PATH whose `reconciler` logs its arguments, then runs the real one; and the log."""
    shim_dir, log = tmp / "shim", tmp / "reconciler-args"
    shim_dir.mkdir()
    shim = shim_dir / "reconciler"
    lines = ["#!/bin/sh", f'printf "%s\\0" "$@" >> "{log}"', f'printf "\\n" >> "{log}"']
    shim.write_text("\n".join([*lines, f'exec "{BIN / "reconciler"}" "$@"', ""]))
    shim.chmod(0o755)
    return f"{shim_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}", log


def _calls(log: Path) -> list[list[str]]:
    # One call per record: each argument ends with NUL, the record with a newline.
    return [record.split("\0") for record in log.read_text().split("\0\n") if record] if log.exists() else []


def _targets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--target"]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("*", ["*"]),
        ("a@*", ["a@*"]),
        ("a@*, admin@*", ["a@*", "admin@*"]),
        ("a@* ,,admin@*", ["a@*", "admin@*"]),
        ("a@*\nadmin@*\n", ["a@*", "admin@*"]),  # a `target: |` block, one pattern per line
    ],
)
def test_action_target_globs_reach_the_reconciler_unexpanded(
    repo: Repo, tmp_path: Path, targets: str, expected: list[str]
) -> None:
    # Files in the checkout that bash would glob-match: the target must not become their names.
    for name in ("Makefile", "README.md", "a@decoy"):
        (repo.root / name).write_text("not a user\n")
    repo.write("a@example.com", access={"smtp": True})
    path, log = _recording_reconciler(tmp_path)
    code, outputs, stdout, summary = _run_action(
        repo, "plan", tmp_path, **repo.env(), PATH=path, TARGETS=targets
    )
    assert code == 0, stdout
    validate, call = _calls(log)  # plan validates first, without the targets
    assert validate == ["validate", "--users", str(repo.users)]
    assert call[0] == "plan"
    assert _targets(call) == expected
    assert outputs["exit-code"] == "2", stdout  # the plan matched a@example.com, not nobody
    assert "a@example.com" in summary


def test_action_validate_ignores_target_and_args(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com", access={"smtp": True})
    path, log = _recording_reconciler(tmp_path)
    code, outputs, stdout, _ = _run_action(
        repo, "validate", tmp_path, **repo.env(), PATH=path, TARGETS="a@*", EXTRA_ARGS="--allow-deletes 5"
    )
    assert (code, outputs["exit-code"]) == (0, "0"), stdout
    assert _calls(log) == [["validate", "--users", str(repo.users)]]


def test_action_passes_args_and_targets_to_reconcile(repo: Repo, tmp_path: Path) -> None:
    repo.write("a@example.com", access={"smtp": True})
    path, log = _recording_reconciler(tmp_path)
    code, outputs, stdout, _ = _run_action(
        repo,
        "reconcile",
        tmp_path,
        **repo.env(),
        PATH=path,
        TARGETS="*",
        EXTRA_ARGS="--allow-deletes 5 --allow-locks 2",
    )
    assert (code, outputs["exit-code"]) == (0, "0"), stdout
    (call,) = _calls(log)
    assert call[:4] == ["reconcile", "--users", str(repo.users), "--auto-approve"]
    assert call[4:] == ["--allow-deletes", "5", "--allow-locks", "2", "--target", "*"]


_GITHUB_SCRIPT_HARNESS = """
const fs = require('fs');
const comments = JSON.parse(process.env.COMMENTS);
const calls = [];
const issues = {
  listComments: 'listComments',
  updateComment: async (args) => { calls.push(['update', args.comment_id, args.body]); },
  createComment: async (args) => { calls.push(['create', args.issue_number, args.body]); },
};
const github = { paginate: async () => comments, rest: { issues } };
const context = { repo: { owner: 'o', repo: 'r' }, issue: { number: 7 } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const script = fs.readFileSync(process.env.SCRIPT, 'utf8');
new AsyncFunction('require', 'github', 'context', script)(require, github, context)
  .then(() => process.stdout.write(JSON.stringify(calls)));
"""


def _run_comment_script(
    tmp: Path,
    exit_code: str,
    comments: list[dict[str, Any]],
    validated: str = "true",
    author: str = "github-actions[bot]",
) -> list[list[Any]]:
    """The comment step's github-script, run by node against a fake GitHub client."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    step = next(
        s for s in _load(ACTION)["runs"]["steps"] if s.get("name") == "Post or update the plan comment"
    )
    script, plan = tmp / "script.js", tmp / "plan.md"
    script.write_text(step["with"]["script"])
    plan.write_text(f"{MARKDOWN_MARKER}\n## Plan: 1 to create\n")
    env = {
        "PATH": os.environ["PATH"],
        "SCRIPT": str(script),
        "COMMENTS": json.dumps(comments),
        "EXIT_CODE": exit_code,
        "VALIDATED": validated,
        "PLAN_MARKDOWN": str(plan),
        "RUN_URL": "https://github.example/o/r/actions/runs/42",
        "COMMENT_AUTHOR": author,
    }
    done = subprocess.run(
        [node, "-e", _GITHUB_SCRIPT_HARNESS], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    calls: list[list[Any]] = json.loads(done.stdout)
    return calls


QUOTING_HUMAN = {
    "id": 1,
    "user": {"login": "someone", "type": "User"},
    "body": f"> {MARKDOWN_MARKER}\n> old plan\nwhy?",
}
OLD_PLAN = {
    "id": 2,
    "user": {"login": "github-actions[bot]", "type": "Bot"},
    "body": f"{MARKDOWN_MARKER}\n## Plan: 2 to update\n",
}


def test_the_plan_comment_updates_the_bots_comment_not_a_quoting_humans(tmp_path: Path) -> None:
    ((verb, comment_id, body),) = _run_comment_script(tmp_path, "2", [QUOTING_HUMAN, OLD_PLAN])
    assert (verb, comment_id) == ("update", 2)
    assert "1 to create" in body
    ((verb, _, body),) = _run_comment_script(tmp_path, "0", [QUOTING_HUMAN])
    assert verb == "create"
    assert body.startswith(MARKDOWN_MARKER)


def test_a_failed_plan_replaces_the_outdated_plan_comment(tmp_path: Path) -> None:
    ((verb, comment_id, body),) = _run_comment_script(tmp_path, "1", [QUOTING_HUMAN, OLD_PLAN])
    assert (verb, comment_id) == ("update", 2)
    assert body.startswith(MARKDOWN_MARKER)
    assert "plan failed" in body
    assert "https://github.example/o/r/actions/runs/42" in body
    assert "2 to update" not in body
    # No plan comment yet: a failure adds none (the failed check says it).
    assert _run_comment_script(tmp_path, "1", [QUOTING_HUMAN]) == []


def test_invalid_files_replace_the_plan_comment_with_validate_failed(tmp_path: Path) -> None:
    ((verb, comment_id, body),) = _run_comment_script(tmp_path, "1", [OLD_PLAN], validated="false")
    assert (verb, comment_id) == ("update", 2)
    assert body.startswith(MARKDOWN_MARKER)
    assert "validate failed" in body
    assert "2 to update" not in body


def test_the_comment_step_runs_on_a_failed_plan() -> None:
    step = next(
        s for s in _load(ACTION)["runs"]["steps"] if s.get("name") == "Post or update the plan comment"
    )
    assert "exit-code == '1'" in step["if"]


def _on_call_overrides(tmp: Path, **inputs: str) -> tuple[int, str, str]:
    """The on-call workflow's step that turns allow_deletes / allow_locks into the action's args."""
    job = _load(ROOT / ".github" / "workflows" / "on-call.yml")["jobs"]["reconcile"]
    step = next(s for s in job["steps"] if s.get("id") == "overrides")
    inputs = {"DRY_RUN": "false", **inputs}
    assert set(step["env"]) == set(inputs)
    output = tmp / "output"
    output.write_text("")
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **inputs}
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, output.read_text(), done.stdout + done.stderr


def test_on_call_passes_the_narrow_overrides_to_the_action(tmp_path: Path) -> None:
    job = _load(ROOT / ".github" / "workflows" / "on-call.yml")["jobs"]["reconcile"]
    (action,) = [s for s in job["steps"] if s.get("uses") == "./"]
    assert action["with"]["args"] == "${{ steps.overrides.outputs.args }}"
    code, output, _ = _on_call_overrides(tmp_path, ALLOW_DELETES="5", ALLOW_LOCKS="")
    assert (code, output) == (0, "args=--allow-deletes 5\n")
    code, output, _ = _on_call_overrides(tmp_path, ALLOW_DELETES=" 5 ", ALLOW_LOCKS="4")
    assert (code, output) == (0, "args=--allow-deletes 5 --allow-locks 4\n")
    code, output, _ = _on_call_overrides(tmp_path, ALLOW_DELETES="", ALLOW_LOCKS="")
    assert (code, output) == (0, "args=\n")
    # A dry run plans what reconcile would need: a key this job cannot read fails it (exit 1).
    code, output, _ = _on_call_overrides(tmp_path, ALLOW_DELETES="", ALLOW_LOCKS="", DRY_RUN="true")
    assert (code, output) == (0, "args=--require-keys\n")


@pytest.mark.parametrize("value", ["5 --force-unlock", "-1", "five", "*"])
def test_on_call_refuses_overrides_that_are_not_whole_numbers(tmp_path: Path, value: str) -> None:
    code, output, log = _on_call_overrides(tmp_path, ALLOW_DELETES=value, ALLOW_LOCKS="")
    assert code == 1
    assert output == ""
    assert "--allow-deletes must be a whole number" in log


def test_the_adoption_workflows_pin_the_action_and_name_their_secrets() -> None:
    pr, apply = (YAML(typ="safe").load(text) for text in _doc_workflows())
    apply_group = _load(ROOT / ".github" / "workflows" / "apply.yml")["concurrency"]["group"]
    assert apply["concurrency"]["group"] == apply_group
    assert apply["jobs"]["reconcile"]["environment"] == "reconciler-apply"
    assert pr["jobs"]["plan"]["environment"] == "reconciler-plan"
    assert "secrets." not in json.dumps(pr["jobs"]["validate"])  # the PR's own code holds none
    for text in _doc_workflows():
        assert "toJSON(secrets)" not in text
        for line in text.splitlines():
            if "uses:" in line:
                assert PINNED.match(line), line


def test_the_plan_job_plans_the_prs_users_as_a_read_only_user(repo: Repo, tmp_path: Path) -> None:
    """plan.yml's steps after the checkouts, for real: keep only the PR's users/, then the action
    with the read-only credential and no user key, as the workflow maps them."""
    reader = "reader@example.com"
    repo.write(reader, operation=True, access={"http_api": True, "smtp": False})
    repo.write("a@example.com", access={"smtp": True})
    assert repo.run("apply", "--auto-approve").code == 0
    workspace = tmp_path / "workspace"
    pr = workspace / "pull-request"
    shutil.copytree(repo.users, pr / "users")
    (pr / "reconciler.yaml").write_text("api_url: https://attacker.example/api/v2\n")  # never used
    (pr / "users" / "a@example.com.yaml").write_text(
        (pr / "users" / "a@example.com.yaml").read_text() + 'description: "`` <b>hi</b> @octocat ``"\n'
    )
    job = _load(ROOT / ".github" / "workflows" / "plan.yml")["jobs"]["plan"]
    keep = next(s for s in job["steps"] if s.get("name") == "Keep only users/, as plain files")
    done = subprocess.run(
        ["bash", "-e", "-c", keep["run"]], cwd=workspace, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not (pr / "reconciler.yaml").exists()  # the default branch has none here
    env = {k: v for k, v in repo.env().items() if not k.startswith("KEY_")}
    env |= {"RECONCILER_API_USER": reader, "RECONCILER_API_KEY": repo.keys[reader]}
    pr_repo = Repo(workspace, repo.service, repo.keys)
    code, outputs, log, summary = _run_action(
        pr_repo, "plan", tmp_path, **env, USERS_DIR="pull-request/users"
    )
    assert code == 0, log
    assert (outputs["exit-code"], outputs["validated"]) == ("2", "true"), log
    assert '| `a@example.com` | `description` | `null` | ```"`` <b>hi</b> @octocat ``"``` |' in summary
    assert "#### Key checks skipped (3; 0 checked)" in summary
