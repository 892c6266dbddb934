"""Values a pull request controls (descriptions, senders, file names, api_users) rendered where
people and machines read them: a PR comment (CommonMark, as markdown-it-py renders it), a
terminal, the GitHub Actions log. None of them may act: no HTML, mention, issue reference, broken
table, terminal escape or workflow command."""

from __future__ import annotations

import json
import re

import pytest

from reconciler.output import render_markdown, render_text
from reconciler.plan import Action, Change, FieldChange, Plan, SkippedKey
from reconciler.safetext import annotation_data, annotation_property, defuse_commands, md_code, terminal
from tests.engine.conftest import Repo
from tests.engine.markdown import render_html, tokens

HOSTILE = [
    "`` <img src=x onerror=alert(1)> ``",
    "a ` b `` c ``` d",
    "`",
    "<!-- hidden",
    "--> <b>bold</b> <script>x()</script>",
    "@octocat please approve",
    "see #123 and GH-1 and org/repo#5",
    "a | b || c",
    "line one\nline two\n\n| x | y |\n|---|---|",
    "[click](https://evil.example) ![img](https://evil.example/i.png) <https://evil.example>",
    "**bold** _em_ # heading &amp; &#64;octocat \\` \\| \\",
    " leading and trailing ",
    "\x1b[2J\r\x07\x9b31m\u202eevil",
    "x" * 10_000,
    "y" * 9_990 + "`@octo",
]

MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")
ISSUE_REF = re.compile(r"#\d|(?i:\bgh-\d)")


def _hostile_plan(value: str) -> Plan:
    name = "evil@example.com"
    return Plan(
        changes=(
            Change(Action.CREATE, value, (FieldChange("description", None, value),), True, "new user"),
            Change(
                Action.UPDATE,
                name,
                (
                    FieldChange("description", value, "ok"),
                    FieldChange("smtp_senders", [value], [f"@{value}"]),
                ),
                key_change=True,
                key_reason=value,
            ),
            Change(Action.LOCK, value, (FieldChange("locked", False, True),)),
            Change(Action.DELETE, value),
        ),
        desired_digest="d",
        live_versions={},
        notes=(value,),
        mail_files=(value,),
        refusals=(value,),
        key_checks_skipped=True,
        skipped_keys=(SkippedKey(value, value),),
    )


def _text_outside_code(markdown: str) -> str:
    """Everything a reader sees as text, not code: where GitHub links @mentions and #123."""
    return "".join(t.content for t in tokens(markdown) if t.type == "text")


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_markdown_plan_carries_hostile_values_only_as_code(value: str) -> None:
    markdown = render_markdown(_hostile_plan(value))
    found = tokens(markdown)
    html_tokens = [t.content.strip() for t in found if t.type in ("html_block", "html_inline")]
    assert html_tokens == ["<!-- reconciler-plan -->"]  # our marker, nothing else
    seen = _text_outside_code(markdown)
    assert not MENTION.search(seen), seen
    assert not ISSUE_REF.search(seen), seen
    html = render_html(markdown)
    assert "<a " not in html and "<img" not in html and "<b>" not in html and "<script" not in html
    assert len(markdown) < 30_000  # a 10,000-character value is cut, not repeated in full


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_markdown_tables_keep_their_shape_with_hostile_values(value: str) -> None:
    found = tokens(render_markdown(_hostile_plan(value)))
    rows: list[int] = []
    for token in found:
        if token.type == "tr_open":
            rows.append(0)
        elif token.type in ("td_open", "th_open"):
            rows[-1] += 1
    # counts (7), create (header + 1 row of 3), update (header + 3 rows of 4), key checks (2)
    assert rows == [7, 7, 3, 3, 4, 4, 4, 4, 2, 2]


@pytest.mark.parametrize("value", [v for v in HOSTILE if v.isprintable()], ids=lambda v: repr(v[:24]))
def test_a_code_span_in_a_table_shows_the_value_exactly(value: str) -> None:
    cell = md_code(value, limit=20_000)
    (code,) = [t for t in tokens(f"| h |\n|---|\n| {cell} |\n") if t.type == "code_inline"]
    assert code.content == value
    (code,) = [t for t in tokens(md_code(value, limit=20_000, table=False)) if t.type == "code_inline"]
    assert code.content == value


def test_control_characters_are_shown_escaped_in_a_code_span() -> None:
    (code,) = [t for t in tokens(md_code("a\nb\x1b[2J\u202e")) if t.type == "code_inline"]
    assert code.content == "a\\x0ab\\x1b[2J\\u202e"


def test_a_long_value_is_cut_and_says_how_much_is_left_out() -> None:
    shown = md_code("x" * 10_000)
    assert shown.endswith("` (+9700 characters)")


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_text_plan_escapes_control_characters_and_starts_no_workflow_command(value: str) -> None:
    text = render_text(_hostile_plan("\n::warning file=x::pwned\n##[error]x\n" + value))
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), line
        assert "##[" not in line, line


def test_terminal_shows_escapes_as_text() -> None:
    assert terminal("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\x0ac"
    assert terminal("line\n::error::x", keep="\n") == "line\n\\x3a:error::x"
    assert terminal("  ::set-output name=x::y") == "  \\x3a:set-output name=x::y"
    assert defuse_commands("ok ##[warning]x") == "ok \\x23#[warning]x"


def test_annotation_escaping_follows_the_runner_rules() -> None:
    assert annotation_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert annotation_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert annotation_data("\x1b[31mred") == "\\x1b[31mred"


def test_a_hostile_file_name_starts_no_workflow_command_on_stdout_or_stderr(repo: Repo) -> None:
    name = "x\x1b[2J\n::warning file=README.md,line=1::pwned\n##[error]also pwned.yaml"
    (repo.users / name).write_text("api_user: x@example.com\nrole: root\n")
    for args in (["validate"], ["validate", "--format", "json"], ["plan"]):
        result = repo.run(*args, env=repo.env() | {"GITHUB_ACTIONS": "true"})
        assert result.code == 1
        assert "\x1b" not in result.output
        commands = [line for line in result.output.splitlines() if line.lstrip().startswith("::")]
        assert commands, result.output  # the annotations are there...
        assert all(line.startswith("::error file=users/x\\x1b[2J%0A%3A%3Awarning") for line in commands)
        assert all("##[" not in line for line in result.output.splitlines())  # ...and nothing else
        if "json" in args:
            (problem, _) = json.loads(result.stdout)["problems"]
            assert problem["file"] == f"users/{name}"  # JSON carries it exactly
        else:
            assert "users/x\\x1b[2J\\x0a::warning file=README.md" in result.stderr  # shown, escaped


def test_many_skipped_key_checks_are_folded_with_only_our_own_html() -> None:
    skipped = tuple(SkippedKey(f"u{n}@example.com", "environment variable X is not set") for n in range(12))
    plan = Plan(
        changes=(), desired_digest="d", live_versions={}, key_checks_skipped=True, skipped_keys=skipped
    )
    markdown = render_markdown(plan)
    html_tokens = [t.content.strip() for t in tokens(markdown) if t.type in ("html_block", "html_inline")]
    assert html_tokens == [
        "<!-- reconciler-plan -->",
        "<details><summary>The 12 users</summary>",
        "</details>",
    ]
    assert render_html(markdown).count("<tr>") == 2 + 1 + 12  # counts (2), header, rows
