"""Markdown as GitHub renders a PR comment, close enough to test what a value can do in it:
markdown-it-py's CommonMark with GFM tables, raw HTML enabled (as GitHub passes it through its
sanitiser), so a value that smuggles HTML shows up as an html token here."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def render_html(markdown: str) -> str:
    return str(_parser().render(markdown))


def tokens(markdown: str) -> list[Token]:
    """Block and inline tokens, flattened in document order."""
    flat: list[Token] = []
    for token in _parser().parse(markdown):
        flat.append(token)
        flat.extend(token.children or [])
    return flat
