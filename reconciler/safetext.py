"""Showing values a pull request controls (descriptions, senders, file names, api_users) without
letting them act: on a terminal, in a GitHub Actions log, in a Markdown PR comment.

Pure functions. The rules they follow:
- terminal: control characters (and the invisible bidi/format characters of "Trojan Source")
  are shown escaped, `\\x1b` as the four characters `\\x1b`, so a value cannot move the cursor,
  clear the screen or start a new line;
- Actions log: the runner takes a line that starts (after blanks) with `::` as a workflow command,
  and `##[` anywhere in a line as an old-style one; such lines are defused by escaping the
  first character of the marker. Annotation data and properties are escaped per the runner's
  rules (`%`, CR, LF; and `:` `,` in properties);
- Markdown: a value goes into a code span whose backtick fence is longer than any backtick run
  in it (so it cannot close the span early), with `|` escaped for tables; text that is not code
  has every ASCII punctuation character backslash-escaped and a zero-width space after `@` and
  `#`, so no HTML, link, @mention or #123 reference can come out of it.
"""

from __future__ import annotations

import re
import unicodedata

MD_VALUE_LIMIT = 300  # characters of one value shown in a PR comment; the JSON plan has all of it
MD_TEXT_LIMIT = 2000
_ZWSP = "\u200b"
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_COMMAND_AT_START = re.compile(r"^(\s*):(?=:)", re.M)
_OLD_COMMAND = "##["
_GH_REF = re.compile(r"(?i)\bgh-(?=\d)")


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(ch: str, keep: str) -> bool:
    return ch not in keep and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def terminal(text: str, *, keep: str = "") -> str:
    """`text` with control and format characters shown escaped (those in `keep` are left, e.g.
    a newline in a message we wrote), then defused for the Actions log."""
    shown = "".join(_escaped(ch) if _unsafe(ch, keep) else ch for ch in text)
    return defuse_commands(shown)


def defuse_commands(text: str) -> str:
    """No line of `text` can be read as a workflow command by the Actions runner."""
    text = _COMMAND_AT_START.sub(lambda m: m.group(1) + "\\x3a", text)
    return text.replace(_OLD_COMMAND, "\\x23#[")


def json_text(document: str) -> str:
    """JSON text (from json.dumps) that the runner cannot take for an old-style `##[` command:
    `##[` can only occur inside a string there, where `\\u0023` reads back the same. Control and
    format characters that json.dumps leaves raw (DEL, C1 such as CSI, bidi overrides) can only be
    inside strings too, and are written as `\\u` escapes, which read back the same."""
    shown = "".join(_json_escaped(ch) if _unsafe(ch, "\n") else ch for ch in document)
    return shown.replace(_OLD_COMMAND, "\\u0023#[")


def _json_escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


# --- GitHub annotations ---------------------------------------------------------------------------


def annotation_data(text: str) -> str:
    """The message of `::error ...::message`: escaped as the runner unescapes it (actions/toolkit
    escapeData), after control characters other than newlines are shown escaped."""
    text = "".join(_escaped(ch) if _unsafe(ch, "\n\r") else ch for ch in text)
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(_OLD_COMMAND, "\\x23#[")  # the runner's old `##[` syntax, anywhere


def annotation_property(text: str) -> str:
    """A property value (file=..., title=...): as data, plus `:` and `,` (toolkit escapeProperty)."""
    return annotation_data(text).replace(":", "%3A").replace(",", "%2C")


# --- Markdown -------------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> tuple[str, str]:
    if len(text) <= limit:
        return text, ""
    return text[:limit], f" (+{len(text) - limit} characters)"


def md_code(text: str, *, limit: int = MD_VALUE_LIMIT, table: bool = True) -> str:
    """`text` as one inline code span; with `table`, for a table cell (GFM splits cells on `|`
    before it sees code spans, and takes `\\|` back to `|` inside them)."""
    visible = "".join(_escaped(ch) if _unsafe(ch, "") else ch for ch in text)
    shown, more = _shorten(visible, limit)
    if table:
        shown = shown.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each side when both are there; a leading or trailing
    # backtick needs the space to stay apart from the fence.
    pad = " " if shown[:1] in ("`", " ") or shown[-1:] in ("`", " ") or not shown else ""
    return f"{fence}{pad}{shown}{pad}{fence}{more}"


def md_text(text: str, *, limit: int = MD_TEXT_LIMIT) -> str:
    """Plain text for a Markdown paragraph, list item or table cell: it renders as itself."""
    visible = "".join(_escaped(ch) if _unsafe(ch, "") else ch for ch in text)
    shown, more = _shorten(visible, limit)
    # GitHub links @name, #123 and GH-123 in text, escaped or not: a zero-width space breaks them.
    shown = _GH_REF.sub(lambda m: m.group(0) + _ZWSP, shown)
    out = []
    previous = ""
    for ch in shown:
        out.append("\\" + ch if ch in _ASCII_PUNCTUATION else ch)
        # org/repo#5 links too; an @ inside a word (an email address) is no mention.
        if ch == "#" or (ch == "@" and not (previous.isalnum() or previous == "_")):
            out.append(_ZWSP)
        previous = ch
    return "".join(out) + more
