"""Adopting an existing account: live users -> users/<api_user>.yaml documents. Pure: text in, text out.

Every setting the service reports is written, so the first `plan` after an import compares all of
them (a field left out of a file would never show as drift). Two values need care:

- `description: null` is written explicitly, so a description added later in the console is drift;
- `smtp_senders: null` (the default, the api_user itself) is written for SMTP users and left out for
  the others: the service refuses senders without SMTP, so there is nothing to compare.
  `[api_user]` would look the same to the mail server but differ from the service's null in a plan.

The service is not trusted with file names: a live `api_user` that is not an email address
(`model.EMAIL_RE`: no `/`, no leading dot, no whitespace) is refused by `importable`, never written;
the command imports the others, lists the refused ones and exits 1.

Keys cannot be read from the service, so each file gets a `from_env` reference with a predictable
variable name; existing files keep whatever reference they have. Existing files are updated through
ruamel.yaml's round trip, touching only values that differ, so comments and key order survive; an
existing file's api_user that matches the service's case-insensitively is kept as written (it must
equal the file name). Strings a YAML 1.1 reader would take for a boolean, null, number or date
(`yes`, `off`, `~`, `012`) are written double-quoted, so other tools read what this one reads.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from reconciler.errors import Problem, ValidationFailed
from reconciler.model import EMAIL_RE, MAX_EMAIL, Access, LiveUser, UserAttributes

SCHEMA_LINE = "yaml-language-server: $schema=../schema/user.schema.json"
SELF_KEY_ENV = "RECONCILER_API_KEY"
SUFFIX = ".yaml"
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
# The order of keys in a new file, as in the README's example.
FIELD_ORDER = (
    "api_user",
    "api_key",
    "role",
    "operation",
    "access",
    "timezone",
    "locked",
    "smtp_senders",
    "description",
)
ACCESS_ORDER = ("http_api", "smtp", "own_data_only")
# Strings that YAML 1.1 tools (PyYAML, yamllint, older linters) read as a boolean, null, number or
# date even though YAML 1.2 (and this tool) reads them as strings: written quoted, so all agree.
_YAML11_WORDS = frozenset(("y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "=", "<<"))
_YAML11_LOOKALIKE = re.compile(
    r"""^(?:
        [-+]?0b[01_]+
      | [-+]?0x[0-9a-f_]+
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?(?:e[-+]?[0-9]+)?
      | [-+]?\.[0-9_]+(?:e[-+]?[0-9]+)?
      | [-+]?\.inf | \.nan
      | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[t\s].*)?
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class ImportedFile:
    """One user's document. `existing` says whether it updates a file already in users/ (whose
    text it then keeps where nothing changed); `key_ref` is where its key is expected."""

    api_user: str
    file_name: str
    text: str
    key_ref: str
    existing: bool
    changed: bool


def importable(live: Iterable[LiveUser]) -> tuple[list[LiveUser], list[str]]:
    """The live users whose api_user is a valid email address (so `<api_user>.yaml` is a plain
    file name in users/), and the api_users refused, in the service's order."""
    valid: list[LiveUser] = []
    refused: list[str] = []
    for user in live:
        name = user.api_user
        if len(name) <= MAX_EMAIL and EMAIL_RE.fullmatch(name):  # `$` alone allows a final newline
            valid.append(user)
        else:
            refused.append(name)
    return valid, refused


def env_var_names(api_users: Iterable[str]) -> dict[str, str]:
    """api_user -> environment variable, e.g. billing@example.com -> BILLING_EXAMPLE_COM_API_KEY.
    Names that would collide (a.b@ and a-b@) get _2, _3... in sorted order, so reruns give the
    same names. The reconciler's own user gets a name of its own too, not RECONCILER_API_KEY:
    that variable is always set, which would end "key checks skipped" right after an import."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for api_user in sorted(api_users, key=str.lower):
        base = _NOT_ALNUM.sub("_", api_user).strip("_").upper()
        base = base if base[:1].isalpha() else "KEY_" + base
        name, n = f"{base}_API_KEY", 1
        while name in taken or name == SELF_KEY_ENV:
            n += 1
            name = f"{base}_{n}_API_KEY"
        taken.add(name)
        names[api_user] = name
    return names


def written_paths(stored: frozenset[str], fixed: Mapping[str, Any]) -> frozenset[str]:
    """What an import writes for a backend: the fields it stores, plus each fixed value that differs
    from the file's default (Mailgun: `access.smtp: true`, which is what makes the gateway serve
    the credential), so that the imported files mean what the account holds."""
    return stored | {path for path, value in fixed.items() if value != _default(path)}


def _default(path: str) -> Any:
    head, _, tail = path.partition(".")
    if tail:
        return getattr(Access(), tail)
    return UserAttributes.model_fields[head].default


def live_fields(user: LiveUser, stored: frozenset[str] | None = None) -> dict[str, Any]:
    """The settings to write for a live user, in file order (without api_user and api_key): those
    the backend stores (`stored`, its capabilities' dotted paths; None = all). A backend that
    stores none of them (Mailgun) gets files with api_user and api_key only."""
    fields = _all_live_fields(user)
    if stored is None:
        return fields
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        if key != "access" and key in stored:
            kept[key] = value
        elif key == "access" and (flags := {n: f for n, f in value.items() if f"access.{n}" in stored}):
            kept[key] = flags
    return kept


def _all_live_fields(user: LiveUser) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "role": user.role,
        "operation": user.operation,
        "access": {name: getattr(user.access, name) for name in ACCESS_ORDER},
        "timezone": user.timezone,
        "locked": user.locked,
    }
    if user.access.smtp or user.smtp_senders:
        fields["smtp_senders"] = list(user.smtp_senders) if user.smtp_senders else None
    fields["description"] = user.description
    return fields


def import_users(
    live: Sequence[LiveUser], existing: Mapping[str, str], stored: frozenset[str] | None = None
) -> list[ImportedFile]:
    """A document per live user. `existing` maps file names already in users/ to their text;
    a file matches its user case-insensitively, as api_users are unique that way. `stored`: the
    fields the backend stores (None = all), the only ones written."""
    by_lower = {name.lower(): name for name in existing}
    env_names = env_var_names([u.api_user for u in live])
    out = []
    for user in live:
        found = by_lower.get((user.api_user + SUFFIX).lower())
        if found is None:
            out.append(_new_file(user, env_names[user.api_user], stored))
        else:
            out.append(_updated_file(user, found, existing[found], env_names[user.api_user], stored))
    return out


def _new_file(user: LiveUser, env_var: str, stored: frozenset[str] | None = None) -> ImportedFile:
    text = new_document(user, env_var, stored)
    return ImportedFile(user.api_user, user.api_user + SUFFIX, text, f"env {env_var}", False, True)


def _updated_file(
    user: LiveUser, file_name: str, text: str, env_var: str, stored: frozenset[str] | None = None
) -> ImportedFile:
    updated, key_ref = update_document(text, user, env_var, file_name, stored)
    return ImportedFile(user.api_user, file_name, updated, key_ref, True, updated != text)


def new_document(user: LiveUser, env_var: str, stored: frozenset[str] | None = None) -> str:
    doc = CommentedMap()
    doc["api_user"] = user.api_user
    doc["api_key"] = CommentedMap(from_env=env_var)
    for key, value in live_fields(user, stored).items():
        doc[key] = _node(value)
    if "smtp_senders" in doc and doc["smtp_senders"] is None:
        doc.yaml_add_eol_comment("the default: only the api_user itself", "smtp_senders")
    doc.yaml_set_start_comment(SCHEMA_LINE)
    return _dump(doc)


def update_document(
    text: str, user: LiveUser, env_var: str, file_name: str, stored: frozenset[str] | None = None
) -> tuple[str, str]:
    """`text` with every setting set to the live value, changing only what differs. Returns the
    new text and where the file says the key is (kept when the file has a reference)."""
    doc = _load(text, file_name)
    written = doc.get("api_user")
    if not (isinstance(written, str) and written.lower() == user.api_user.lower()):
        # api_users are unique case-insensitively and the file was found that way: its name is the
        # spelling validate checks api_user against, so a file's own casing is never overwritten.
        _set(doc, "api_user", file_name.removesuffix(SUFFIX), FIELD_ORDER)
    if not isinstance(doc.get("api_key"), dict) or not doc["api_key"]:
        _set(doc, "api_key", CommentedMap(from_env=env_var), FIELD_ORDER)
    fields = live_fields(user, stored)
    for key, value in fields.items():
        _set(doc, key, value, FIELD_ORDER)
    if "smtp_senders" not in fields and "smtp_senders" in doc:
        del doc["smtp_senders"]
    updated = _dump(doc)
    return (text if updated == _dump(_load(text, file_name)) else updated), _describe_ref(doc["api_key"])


def _set(doc: CommentedMap, key: str, value: Any, order: Sequence[str]) -> None:
    if isinstance(value, dict) and isinstance(doc.get(key), CommentedMap):
        for sub, sub_value in value.items():
            _set(doc[key], sub, sub_value, ACCESS_ORDER)
        return
    if key in doc:
        if not _same(doc[key], value):
            doc[key] = _node(value)
        return
    doc.insert(_position(doc, key, order), key, _node(value))


def _same(current: Any, value: Any) -> bool:
    # Compare as plain data: a CommentedSeq equal to the list keeps its comments.
    if isinstance(current, list) and isinstance(value, list):
        return list(current) == value
    if isinstance(current, str) and isinstance(value, str):
        # A string keeps its quotes as written, but a plain one that YAML 1.1 misreads gets quoted.
        return current == value and (isinstance(current, ScalarString) or not yaml11_ambiguous(value))
    return type(current) is type(value) and bool(current == value)


def yaml11_ambiguous(text: str) -> bool:
    """True for a string a YAML 1.1 reader would take for a boolean, null, number or date when
    written plain (`yes`, `off`, `~`, `012`, `1_000`, `1:30`, `2024-01-31`), case-insensitively."""
    return text.lower() in _YAML11_WORDS or bool(_YAML11_LOOKALIKE.match(text))


def _position(doc: CommentedMap, key: str, order: Sequence[str]) -> int:
    """Insert after the last key that comes before `key` in the canonical order."""
    before = set(order[: order.index(key)]) if key in order else set(order)
    keys = list(doc.keys())
    last = max((i for i, k in enumerate(keys) if k in before), default=-1)
    return last + 1


def _node(value: Any) -> Any:
    if isinstance(value, dict):
        node = CommentedMap()
        for key, sub in value.items():
            node[key] = _node(sub)
        return node
    if isinstance(value, list):
        return CommentedSeq(_node(item) for item in value)
    if isinstance(value, str) and not isinstance(value, ScalarString) and yaml11_ambiguous(value):
        return DoubleQuotedScalarString(value)
    return value


def _describe_ref(ref: Any) -> str:
    if isinstance(ref, dict):
        if "from_env" in ref:
            return f"env {ref['from_env']}"
        if "from_file" in ref:
            return f"file {ref['from_file']}"
        if "age" in ref:
            return "age-encrypted in the file"
    return "see the file"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the style of the example users/
    yaml.width = 4096  # never fold a long description over two lines
    # ruamel writes None as an empty value; `null` says on purpose that there is none.
    yaml.representer.add_representer(
        type(None), lambda rep, _data: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _load(text: str, file_name: str) -> CommentedMap:
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        raise ValidationFailed([Problem(file_name, f"cannot update this file: {exc}")]) from None
    if not isinstance(doc, CommentedMap):
        raise ValidationFailed([Problem(file_name, "cannot update this file: it is not a mapping")])
    return doc


def _dump(doc: CommentedMap) -> str:
    stream = io.StringIO()
    _yaml().dump(doc, stream)
    return stream.getvalue()
