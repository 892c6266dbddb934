"""Docs and code cite the repository's own files: every path they name exists, and nothing cites the
design notes the repository does not contain (users of the project have only what is here; the
HTTP contract is docs/contract.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import reconciler

REPO = Path(reconciler.__file__).resolve().parent.parent
TOP = r"docs|tests|scripts|reconciler|reconciler_service|benchmarks|contrib|templates|schema|requirements"
EXTENSIONS = r"md|py|json|toml|yml|yaml|sh|txt|j2|cfg|service|timer"
# A repository path: starts at a top-level directory, ends in a file extension (so that annotation
# names such as reconciler/key-fingerprint are not taken for files).
CITATION = re.compile(rf"(?<![\w/.$<{{@-])((?:{TOP})/[A-Za-z0-9_@./-]*\.(?:{EXTENSIONS}))(?![\w/-])")
# The project's design and style notes live outside the repository; built from parts so that this
# file does not cite them itself.
NOTES = ("DESIGN", "STYLE")
FORBIDDEN = re.compile("|".join([*(re.escape(name + ".md") for name in NOTES), r"\.\./shared/"]))
SCANNED = (".py", ".md", ".json", ".toml", ".yml", ".yaml", ".sh", ".j2", ".cfg")


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    this = Path(__file__).resolve().relative_to(REPO).as_posix()  # it names what it looks for
    names = listed.decode().split("\0")
    return [name for name in names if name.endswith((*SCANNED, "Makefile")) and name != this]


def _lines(name: str) -> list[tuple[int, str]]:
    path = REPO / name
    if not path.is_file():  # deleted in the work tree, not yet in the index
        return []
    return list(enumerate(path.read_text(errors="replace").splitlines(), start=1))


def test_nothing_cites_design_notes_the_repository_does_not_contain() -> None:
    found = [
        f"{name}:{number}" for name in _tracked() for number, line in _lines(name) if FORBIDDEN.search(line)
    ]
    assert found == [], "cite docs/contract.md or docs/architecture.md instead"


def test_every_repository_path_a_doc_or_comment_names_exists() -> None:
    missing = [
        f"{name}:{number}: {cited}"
        for name in _tracked()
        for number, line in _lines(name)
        for cited in CITATION.findall(line)
        if not (REPO / cited).exists()
    ]
    assert missing == []


def test_the_check_finds_a_missing_citation() -> None:
    assert CITATION.findall("see docs/nothing-here.md, and reconciler/key-fingerprint") == [
        "docs/nothing-here.md"
    ]
    assert FORBIDDEN.search("as ../shared/" + NOTES[0] + ".md says")
    assert FORBIDDEN.search("compute, then act (" + NOTES[1] + ".md)")
