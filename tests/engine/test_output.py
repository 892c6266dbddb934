"""Golden files for the Markdown and JSON plans: reviewers and tools depend on their exact shape.
Regenerate after an intended change with UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.output import (
    MARKDOWN_MARKER,
    plan_from_json,
    plan_to_json,
    render_json,
    render_markdown,
    render_text,
)
from reconciler.plan import Action, Change, Drift, FieldChange, Plan, SkippedKey

GOLDEN = Path(__file__).parent / "golden"

SAMPLE = Plan(
    changes=(
        Change(
            Action.CREATE,
            "new@example.com",
            (
                FieldChange("role", None, "normal"),
                FieldChange("access.smtp", None, True),
                FieldChange("description", None, "a | b"),
            ),
            key_change=True,
            key_reason="new user",
        ),
        Change(
            Action.CREATE,
            "second@example.com",
            (FieldChange("role", None, "admin"), FieldChange("smtp_senders", None, ["@second.example.com"])),
            key_change=True,
            key_reason="new user",
        ),
        Change(
            Action.UPDATE,
            "billing@example.com",
            (
                FieldChange("timezone", "Asia/Tokyo", "UTC"),
                FieldChange("smtp_senders", ["billing@example.com"], ["@billing.example.com"]),
            ),
            key_change=True,
            key_reason="declared key changed",
            version="v1billing",
            drift=(Drift("timezone", "alice@example.com", datetime(2026, 11, 30, 10, 2, 41, tzinfo=UTC)),),
        ),
        Change(Action.UNLOCK, "back@example.com", (FieldChange("locked", True, False),), version="v1back"),
        Change(Action.LOCK, "legacy@example.com", (FieldChange("locked", False, True),), version="v1legacy"),
        Change(Action.DELETE, "gone@example.com", version="v1gone"),
    ),
    desired_digest="0" * 64,
    live_versions={"billing@example.com": "1" * 16, "gone@example.com": "2" * 16},
    key_checks_skipped=True,
    keys_checked=3,
    skipped_keys=(SkippedKey("x@example.com", "environment variable X_API_KEY is not set"),),
    mail_files=("dovecot/users.passwd", "postfix/sasl_passwd"),
)


def _golden(name: str, actual: str) -> str:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    return path.read_text(encoding="utf-8")


def test_markdown_plan_matches_golden_file() -> None:
    rendered = render_markdown(SAMPLE)
    assert rendered == _golden("plan.md", rendered)
    assert rendered.startswith(MARKDOWN_MARKER)


def test_json_plan_matches_golden_file() -> None:
    rendered = render_json(SAMPLE)
    assert rendered == _golden("plan.json", rendered)


def test_saved_plan_round_trips() -> None:
    assert plan_from_json(json.loads(render_json(SAMPLE))) == SAMPLE


def test_text_plan_uses_terraform_symbols_and_hides_keys() -> None:
    text = render_text(SAMPLE)
    assert "  + create new@example.com" in text
    assert "~ timezone:" in text and '"Asia/Tokyo" -> "UTC"' in text
    assert "api_key:" in text and "(sensitive) will change  # declared key changed" in text
    assert "  - delete gone@example.com" in text
    assert "Plan: 2 to create, 1 to update (1 key change), 1 to unlock, 1 to lock, 1 to delete." in text


def test_markdown_escapes_cells() -> None:
    assert "a \\| b" in render_markdown(SAMPLE)


def test_markdown_values_are_code_spans_so_at_domains_mention_nobody() -> None:
    md = render_markdown(SAMPLE)
    assert '`["@billing.example.com"]`' in md
    assert " @billing" not in md.replace('`["@billing.example.com"]`', "")


@pytest.mark.parametrize("version", [0, 2, None])
def test_unknown_plan_format_is_rejected(version: object) -> None:
    data = plan_to_json(SAMPLE) | {"format_version": version}
    with pytest.raises(ValueError, match="format_version"):
        plan_from_json(data)


def test_markdown_creates_share_columns_when_fields_differ() -> None:
    rows = [line for line in render_markdown(SAMPLE).splitlines() if line.startswith("| `")][:2]
    header = next(
        line for line in render_markdown(SAMPLE).splitlines() if line.startswith("| API user | role")
    )
    assert header == "| API user | role | access.smtp | smtp_senders | description | api_key |"
    assert rows[0] == '| `new@example.com` | `"normal"` | `true` |  | `"a \\| b"` | (sensitive) |'
    assert rows[1] == '| `second@example.com` | `"admin"` |  | `["@second.example.com"]` |  | (sensitive) |'
