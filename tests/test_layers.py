"""Import contracts (as import-linter would check them): the pure core never imports a gateway's
library, directly or through another reconciler module, so `plan` and `render` stay functions of
values (STYLE.md: compute, then act)."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import reconciler

ROOT = Path(reconciler.__file__).parent
GATEWAYS = frozenset(
    {"requests", "urllib3", "werkzeug", "aiosmtpd", "sqlite3", "subprocess", "socket", "click"}
)


def _file(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports(module: str) -> frozenset[str]:
    """Top-level names of every module `module` imports, following reconciler's own modules."""
    path = _file(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            found.add(name.split(".")[0])
            if name.startswith("reconciler.") and _file(name) is not None and name != module:
                found |= _imports(name)
    return frozenset(found)


@pytest.mark.parametrize(
    "module",
    [
        "reconciler.plan",
        "reconciler.output",
        "reconciler.safetext",
        "reconciler.model",
        "reconciler.mail.render",
        "reconciler.importer",
    ],
)
def test_pure_modules_do_not_import_gateways(module: str) -> None:
    assert _imports(module) & GATEWAYS == set()


def test_only_the_client_speaks_http() -> None:
    speakers = {
        f"reconciler.{p.relative_to(ROOT).with_suffix('').as_posix().replace('/', '.')}"
        for p in ROOT.rglob("*.py")
        if "requests" in _direct(p)
    }
    assert speakers == {"reconciler.client"}


def _direct(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    direct = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return direct | {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }


def test_validate_does_not_load_the_http_client() -> None:
    code = "; ".join(
        [
            "import sys",
            "from reconciler.cli import group",
            "group.get_command(None, 'validate')",
            "print(*sys.modules)",
        ]
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not {"requests", "werkzeug"} & set(run.stdout.split())
