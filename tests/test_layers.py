"""Import contracts: import-linter checks them (`[tool.importlinter]` in pyproject.toml, `make imports`);
these tests prove the check bites, and that each CLI verb loads only what it needs (a lazy import is
invisible to a static import graph, so that part is checked at run time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reconciler

REPO = Path(reconciler.__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copied packages shadow the installed (editable) ones for grimp.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("reconciler", "reconciler_service"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_real_tree_keeps_every_import_contract() -> None:
    run = _lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("plan.py", "import requests", "The pure core imports no I/O library"),
        ("mail/render.py", "import subprocess", "The pure core imports no I/O library"),
        ("executor.py", "import urllib3", "Only backends speak HTTP"),
        ("workflows/planning.py", "import click", "Only the CLI prints"),
        ("run/audit.py", "import reconciler_service.store", "The tool never imports the embedded service"),
        ("cli/show.py", "import reconciler.backend.registry", "The CLI never imports a backend"),
        ("run/lock.py", "import reconciler.workflows.context", "Layers: cli > workflows > run > backend"),
        ("backend/memory.py", "import reconciler.run.audit", "Layers: cli > workflows > run > backend"),
        ("plan.py", "import reconciler.workflows.keys", "The core imports none of the layers above it"),
    ],
)
def test_a_planted_violation_fails_lint_imports(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy_tree(tmp_path)
    target = root / "reconciler" / module
    target.write_text(target.read_text() + f"\n{line}  # planted by the test\n")
    run = _lint_imports(root)
    assert run.returncode != 0, run.stdout
    broken = [text for text in run.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith(contract) for text in broken), run.stdout
    planted = line.split()[1]
    assert f"reconciler.{module.removesuffix('.py').replace('/', '.')} -> {planted}" in run.stdout


def test_a_planted_import_of_the_tool_in_the_service_fails_lint_imports(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    target = root / "reconciler_service" / "app.py"
    target.write_text(target.read_text() + "\nimport reconciler.model  # planted by the test\n")
    run = _lint_imports(root)
    assert run.returncode != 0, run.stdout
    broken = [text for text in run.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith("The embedded service never imports the tool") for text in broken), run.stdout
    assert "reconciler_service.app -> reconciler.model" in run.stdout


def _loaded_by(verb: str) -> set[str]:
    """Modules loaded by building the click command of `verb` (and its subcommands) in a fresh
    interpreter."""
    code = "\n".join(
        [
            "import sys",
            "from reconciler.cli import group",
            f"command = group.get_command(None, {verb!r})",
            "for name in getattr(command, 'list_commands', lambda ctx: [])(None):",
            "    command.get_command(None, name)",
            "print(*sys.modules)",
        ]
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(run.stdout.split())


EXTRAS = {"werkzeug", "aiosmtpd", "sqlite3", "reconciler_service", "pyrage", "argon2", "bcrypt"}


def test_validate_does_not_load_the_http_client() -> None:
    assert not ({"requests", "urllib3"} | EXTRAS) & _loaded_by("validate")


@pytest.mark.parametrize(
    "verb", ["plan", "apply", "reconcile", "render", "live", "status", "import", "service"]
)
def test_no_verb_loads_the_embedded_service_or_an_extra_up_front(verb: str) -> None:
    assert not EXTRAS & _loaded_by(verb)
