"""The GitHub action's run step with the cmc-console backend: the plan comment is the checklist,
and apply publishes it and ends "waiting for a person" (exit 4) without failing the job."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from reconciler.output import MARKDOWN_MARKER
from tests.cmc.conftest import Cmc
from tests.ops.test_workflows import BIN, _run_step_script


def run_action(cmc: Cmc, command: str, tmp: Path) -> tuple[dict[str, str], str, str]:
    outputs, summary = tmp / "output", tmp / "summary"
    outputs.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k.startswith(("RECONCILER_", "KEY_"))}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "RUNNER_TEMP": str(tmp),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "COMMAND": command,
        "USERS_DIR": str(cmc.users),
        "TARGETS": "",
        "EXTRA_ARGS": "",
        "KEY_SECRETS_SET": "false",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", _run_step_script()],
        env=env,
        cwd=cmc.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log, text = done.stdout + done.stderr, summary.read_text()
    for key in cmc.keys.values():
        assert key not in log + text
    assert done.returncode == 0, log
    return dict(line.split("=", 1) for line in outputs.read_text().splitlines()), log, text


def test_the_action_posts_the_checklist_and_apply_waits_for_a_person(cmc: Cmc, tmp_path: Path) -> None:
    cmc.declare("billing@example.com")
    outputs, _, summary = run_action(cmc, "plan", tmp_path)
    assert outputs["exit-code"] == "2" and outputs["changes"] == "true"
    assert summary.startswith(MARKDOWN_MARKER) and "click add" in summary
    assert json.loads(Path(outputs["plan-json"]).read_text())["tasks"][0]["action"] == "create"
    outputs, log, summary = run_action(cmc, "apply", tmp_path)
    assert outputs["exit-code"] == "4"
    assert "::warning title=reconciler::waiting for a person" in log
    assert "click add" in summary and "waiting for a person (exit 4)" in summary
