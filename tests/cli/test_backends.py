"""`reconciler backends`: every installed backend with its capabilities; one that cannot be loaded
(its module missing) is listed as unavailable with the reason, and the verb still succeeds."""

from __future__ import annotations

import json

import pytest

from reconciler.backend import registry
from reconciler.backend.http import FACTORY as HTTP
from reconciler.backend.memory import FULL
from tests.cli.schemas import validate
from tests.fixtures.cli import run_main


def test_backends_json_lists_the_built_in_ones_with_their_capabilities() -> None:
    result = run_main(["backends", "--format", "json"])
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    validate("backends", document)
    found = {b["name"]: b for b in document["backends"]}
    assert found["memory"]["capabilities"] == FULL.to_json()
    assert found["http-v2"]["capabilities"] == HTTP.capabilities.to_json()
    assert found["http-v2"]["available"] and found["http-v2"]["summary"]


def test_a_backend_whose_module_is_missing_is_listed_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = {**registry._BUILT_IN, "nowhere": "reconciler.backend.nowhere:FACTORY"}
    monkeypatch.setattr(registry, "_BUILT_IN", patched)
    result = run_main(["backends", "--format", "json"])
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    validate("backends", document)
    missing = next(b for b in document["backends"] if b["name"] == "nowhere")
    assert missing["available"] is False and missing["capabilities"] is None
    assert "No module named 'reconciler.backend.nowhere'" in missing["unavailable"]
    text = run_main(["backends"])
    assert text.code == 0 and "nowhere (built in): UNAVAILABLE: " in text.stdout
    assert "memory (built in): an account held in this process" in text.stdout
