"""Reading one small YAML file safely and fast, remembering where every key and value is.

The whole users/ tree must validate in about a second, which rules out ruamel.yaml's round-trip
loader (about 16 s per 10,000 files) and even its safe loader. So this module drives libyaml's
parser (ruamel.yaml's C extension) at the event level and builds plain dicts and lists itself. That
also makes the refusals cheap: anchors, aliases, merge keys, tags and duplicate keys are seen as
events arrive, before anything could expand (no billion laughs).

Scalars are resolved with the YAML 1.2 core schema, the one ruamel.yaml uses: `yes`/`no`/`on` stay
strings, so a strict model rejects them instead of silently reading a boolean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]  # libyaml via the C extension
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from reconciler.errors import Problem, ValidationFailed

MAX_FILE_BYTES = 64 * 1024
# A user file nests three levels (access.smtp); 500 levels of `[[[` would exhaust Python's stack
# in the builder, which recurses once per level.
MAX_DEPTH = 20
MAX_KEY_LENGTH = 100  # keys are field names; a longer one would only flood the messages
_OPENS = (MappingStartEvent, SequenceStartEvent)
_CLOSES = (MappingEndEvent, SequenceEndEvent)
_EMPTY = "the file is empty; expected a mapping of keys to values"

_SPECIAL: dict[str, Any] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OTHER = re.compile(r"^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_NUMBER_START = frozenset("0123456789+-.")
_NUMBERS: tuple[tuple[re.Pattern[str], Callable[[str], Any]], ...] = (
    (_INT, int),
    (_INT_OTHER, lambda text: int(text, 0)),
    (_FLOAT, float),
)


class Position(NamedTuple):
    """1-based line and column, as editors and GitHub annotations count them."""

    line: int
    column: int


class MarkTable(Mapping[str, Position]):
    """libyaml marks (0-based) seen as 1-based positions, converted only when someone looks."""

    __slots__ = ("_marks",)

    def __init__(self, marks: dict[str, Any]) -> None:
        self._marks = marks

    def __getitem__(self, path: str) -> Position:
        mark = self._marks[path]
        return Position(mark.line + 1, mark.column + 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def lines(self) -> dict[str, int]:
        return {path: mark.line + 1 for path, mark in self._marks.items() if path and "?" not in path}


@dataclass(frozen=True)
class YamlMapping:
    """A parsed top-level mapping and where each of its parts was written.

    Paths are dotted field names with list indexes in brackets: `access.smtp`, `smtp_senders[1]`.
    `keys` has the position of each key, `values` the position of each value (for a nested
    mapping, where it starts); the root mapping's start is under the empty path.
    """

    data: dict[str, Any]
    keys: MarkTable = field(default_factory=lambda: MarkTable({}))
    values: MarkTable = field(default_factory=lambda: MarkTable({}))

    def position(self, path: str, *, key: bool = False) -> Position | None:
        """Where to point a reader for `path`: its value, or its key when `key` is set."""
        table = self.keys if key else self.values
        return table.get(path) or self.keys.get(path)

    def lines(self) -> dict[str, int]:
        """Field path -> line: of the key for mapping entries, of the value for list items."""
        lines = self.values.lines()
        lines.update(self.keys.lines())
        return lines


def read_text(path: Path, display: str | None = None) -> tuple[str, bytes]:
    """The file's text and raw bytes; refuses big files and non-UTF-8 with a located problem."""
    name = display or str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(name, f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(name, f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; refusing to read it")
    return decode(raw, name), raw


def decode(raw: bytes, name: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ValidationFailed(
            [Problem(name, "the file is not valid UTF-8 (save it as UTF-8)", line, column)]
        ) from None
    return text.removeprefix("\ufeff")


def load_mapping(path: Path, display: str | None = None) -> tuple[YamlMapping, bytes]:
    """Read and parse one file whose top level must be a mapping."""
    name = display or str(path)
    text, raw = read_text(path, name)
    return parse_mapping(text, name), raw


def parse_mapping(text: str, name: str) -> YamlMapping:
    """Parse `text` as exactly one YAML document holding a mapping, or raise every problem found."""
    builder = _Builder(name)
    try:
        result = builder.document(CParser(text))
    except MarkedYAMLError as exc:
        raise ValidationFailed([_syntax_problem(name, exc)]) from None
    except YAMLError as exc:
        raise _fail(name, f"not valid YAML: {type(exc).__name__}") from None
    if builder.problems:
        raise ValidationFailed(builder.problems)
    return result


def _syntax_problem(name: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    detail = exc.problem or exc.context or "syntax error"
    message = f"not valid YAML: {detail}"
    if mark is None:
        return Problem(name, message)
    return Problem(name, message, mark.line + 1, mark.column + 1)


def _fail(name: str, message: str, line: int | None = None, column: int | None = None) -> ValidationFailed:
    return ValidationFailed([Problem(name, message, line, column)])


def _pos(event: Event) -> Position:
    mark = event.start_mark
    return Position(mark.line + 1, mark.column + 1)


def resolve_scalar(event: ScalarEvent) -> Any:
    """YAML 1.2 core schema for plain scalars; quoted scalars are always strings."""
    value: str = event.value
    if not event.implicit[0]:
        return value
    if value in _SPECIAL:
        return _SPECIAL[value]
    if value[0] not in _NUMBER_START:
        return value  # the common case: a word or an address, never a number
    for pattern, convert in _NUMBERS:
        if pattern.match(value):
            return convert(value)
    return value


class _Builder:
    """Turns parser events into plain Python values, recording positions and refusals.

    This is the hot loop of `validate` (about 40 events per file, 10,000 files in a second), so it
    compares types with `is`, keeps libyaml's marks as they come and converts them only on demand.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []
        self.keys: dict[str, Any] = {}
        self.values: dict[str, Any] = {}

    def refuse(self, event: Event, message: str) -> None:
        line, column = _pos(event)
        self.problems.append(Problem(self.name, message, line, column))

    def document(self, parser: Any) -> YamlMapping:
        parser.get_event()  # StreamStart
        event = parser.get_event()
        if type(event) is StreamEndEvent:
            raise _fail(self.name, _EMPTY)
        assert type(event) is DocumentStartEvent
        root_event = parser.get_event()
        root = self.node(parser, root_event, "")
        end = parser.get_event()
        assert type(end) is DocumentEndEvent
        extra = parser.get_event()
        if type(extra) is not StreamEndEvent:
            message = "only one YAML document per file is allowed (remove the extra '---')"
            raise _fail(self.name, message, *_pos(extra))
        return self.check_root(root_event, root)

    def check_root(self, event: Event, root: Any) -> YamlMapping:
        if root is None and type(event) is ScalarEvent:
            raise _fail(self.name, _EMPTY)
        if type(root) is not dict:
            line, column = _pos(event)
            raise _fail(
                self.name, f"expected a mapping of keys to values, got {type_name(root)}", line, column
            )
        return YamlMapping(root, MarkTable(self.keys), MarkTable(self.values))

    def node(self, parser: Any, event: Any, path: str, depth: int = 0) -> Any:
        self.values[path] = event.start_mark
        kind = type(event)
        if kind is AliasEvent:
            self.refuse(event, "YAML aliases (*name) are not allowed; write the value out")
            return None
        if event.anchor is not None or event.tag is not None:
            self.check_props(event)
        if kind is ScalarEvent:
            # libyaml reports `! true` as implicit with the tag `!`; that tag means "a string".
            return self.scalar(event) if event.implicit[0] and event.tag is None else event.value
        if depth >= MAX_DEPTH:
            self.refuse(event, f"nested more than {MAX_DEPTH} levels deep; a user file needs three")
            _skip_collection(parser)
            return None
        if kind is MappingStartEvent:
            return self.mapping(parser, path, depth + 1)
        return self.sequence(parser, path, depth + 1)

    def scalar(self, event: Any) -> Any:
        try:
            return resolve_scalar(event)
        except ValueError:
            # Python refuses to convert integers of more than 4,300 digits (a CPU-time guard).
            self.refuse(event, "this number has too many digits; quote it if it is meant as text")
            return None

    def check_props(self, event: Any) -> None:
        if event.anchor is not None:
            self.refuse(event, "YAML anchors (&name) are not allowed; write the value out")
        if event.tag == "!":
            # The non-specific tag forces a string (`! true` is not a boolean): refused like the others.
            self.refuse(event, "YAML tags (!name) are not allowed; remove the '!'")
        elif event.tag is not None:
            self.refuse(event, "YAML tags (!name) are not allowed")

    def mapping(self, parser: Any, path: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        keys = self.keys
        while (event := parser.get_event()).__class__ is not MappingEndEvent:
            key = self.key(parser, event)
            value_event = parser.get_event()
            if key is None or key in result:
                if key is not None:
                    line = keys[prefix + key].line + 1
                    self.refuse(event, f"duplicate key {key!r} (first given on line {line})")
                self.node(parser, value_event, f"{prefix}?", depth)
                continue
            child = prefix + key
            keys[child] = event.start_mark
            result[key] = self.node(parser, value_event, child, depth)
        return result

    def key(self, parser: Any, event: Any) -> str | None:
        """A mapping key as a string, or None (after recording why) when it cannot be one."""
        if type(event) is not ScalarEvent:
            self.refuse(event, "mapping keys must be plain names")
            if type(event) in _OPENS:
                _skip_collection(parser)  # nothing in it can be right: one message is enough
            return None
        if event.anchor is not None or event.tag is not None:
            self.check_props(event)
        value: str = event.value
        if value == "<<" and event.implicit[0]:
            self.refuse(event, "YAML merge keys (<<) are not allowed; write the keys out")
            return None
        if len(value) > MAX_KEY_LENGTH:
            self.refuse(event, f"a key longer than {MAX_KEY_LENGTH} characters; keys are field names")
            return None
        return value

    def sequence(self, parser: Any, path: str, depth: int) -> list[Any]:
        result: list[Any] = []
        while (event := parser.get_event()).__class__ is not SequenceEndEvent:
            result.append(self.node(parser, event, f"{path}[{len(result)}]", depth))
        return result


def _skip_collection(parser: Any) -> None:
    """Consume the events of a collection whose start was just read, without recursion."""
    level = 1
    while level:
        kind = type(parser.get_event())
        if kind in _OPENS:
            level += 1
        elif kind in _CLOSES:
            level -= 1


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def type_name(value: Any) -> str:
    """How a YAML reader would call this value's kind, for messages that must not show the value."""
    if value is None:
        return "nothing (null)"
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)
