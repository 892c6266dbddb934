"""The adversarial corpus: user files and key references written to hurt (bombs, tags, merge keys,
duplicates, encodings, look-alike addresses, injection into rendered files, the terminal and
GitHub annotations, special files under a .yaml name, FIFOs and devices as key files).

Every case must be refused by `reconciler validate` with file:line, within 2 s, without writing
anything, and without anything in the output that a terminal or a CI runner would act on. All
cases run in one subprocess (tests/adversarial/runner.py) whose peak memory must stay under 200 MB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.runner import cases

REPO = Path(__file__).resolve().parents[2]
MAX_SECONDS = 2.0
MAX_RSS_MIB = 200


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("adversarial")
    done = subprocess.run(
        [sys.executable, "-m", "tests.adversarial.runner", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {line.get("case", "peak"): line for line in lines}


def test_the_corpus_is_big_enough() -> None:
    assert len(cases()) >= 80


@pytest.mark.parametrize("case", cases())
def test_each_case_is_refused_with_file_and_line_quickly_writing_nothing(
    results: dict[str, Any], case: str
) -> None:
    result = results[case]
    assert result["code"] == 1, result
    assert result["seconds"] < MAX_SECONDS
    assert result["written"] == []
    users = re.escape(result["users"])
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
    assert any(re.match(rf"error: {users}/.+?:\d+(:\d+)?: ", line) for line in errors), result["stderr"]
    if result["expect"]:
        assert any(line.startswith(f"error: {result['users']}/{result['expect']}") for line in errors)


@pytest.mark.parametrize("case", cases())
def test_no_case_can_steer_the_terminal_or_the_ci_runner(results: dict[str, Any], case: str) -> None:
    result = results[case]
    for stream in (result["stdout"], result["stderr"]):
        assert all(ch == "\n" or ch.isprintable() for ch in stream), repr(stream)
        for line in stream.splitlines():
            # The only workflow commands are our own annotations of a file in users/.
            assert not line.startswith("::") or line.startswith(f"::error file={result['users']}/"), line


def test_all_cases_together_stay_under_200_mb(results: dict[str, Any]) -> None:
    assert results["peak"]["peak_rss_kib"] / 1024 < MAX_RSS_MIB
