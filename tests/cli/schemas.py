"""The committed JSON Schemas of every `--format json` output (docs/schemas/), for the tests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@cache
def _registry() -> Registry[Any]:
    resources = [
        (doc["$id"], Resource.from_contents(doc))
        for doc in (json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json"))
    ]
    return Registry().with_resources(resources)


def validate(name: str, document: Any) -> None:
    """Raise jsonschema.ValidationError unless `document` matches docs/schemas/<name>.schema.json."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator(schema, registry=_registry()).validate(document)
