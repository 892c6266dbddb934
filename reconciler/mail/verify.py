"""Structural checks of the rendered files, before anything is staged (pure).

The templates are the operator's to change (RECONCILER_TEMPLATES_DIR), and a typo there can yield a
file that every tool accepts but that is wrong: a passwd line without its `:` parses as a user that
does not exist (every login then gets 535), a sasl_passwd line without `:` makes every relay hop
fail while the gateway still answers 250. So each file is parsed the way its daemon parses it and
compared with what was rendered into it: the same users, the same senders, the same values.

Messages name the file, the line number and what is wrong, never a line of sasl_passwd or
users.passwd (keys and hashes).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sequence
from typing import Protocol

from reconciler.errors import MailServerError
from reconciler.mail.render import (
    PASSWD,
    SASL_PASSWD,
    SENDER_LOGIN_MAPS,
    SENDER_RELAYHOST_MAPS,
    Expected,
    RenderedFile,
)

MAX_PROBLEMS = 20


def verify(files: Sequence[RenderedFile], expected: Expected) -> None:
    """The files must say exactly what `expected` says the templates were given.

    Raise one MailServerError listing every problem (up to MAX_PROBLEMS) in the rendered files."""
    checks = {
        PASSWD: _passwd,
        SENDER_LOGIN_MAPS: _login_maps,
        SASL_PASSWD: _sasl_passwd,
        SENDER_RELAYHOST_MAPS: _relayhost_maps,
    }
    problems = [
        f"{file.path}: {problem}"
        for file in files
        if file.path in checks
        for problem in checks[file.path](file.content, expected)
    ]
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise MailServerError(
            "the rendered mail files are malformed (check the templates); nothing was written:\n  "
            + "\n  ".join(shown)
            + more
        )


# --- Dovecot passwd-file ------------------------------------------------------------------------


def _passwd(content: str, expected: Expected) -> Iterator[str]:
    """user:{SCHEME}hash[:more fields]; '#' comments and blank lines are skipped, as Dovecot does."""
    seen: set[str] = set()
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        password = rest.split(":", 1)[0]
        if not sep or user not in expected.hashes:
            yield f"line {number}: expected `api_user:{{{expected.scheme}}}hash` with a declared SMTP user"
        elif user in seen:
            yield f"line {number}: {user} has a second line"
        elif not password.startswith("{" + expected.scheme + "}"):
            yield f"line {number}: the password of {user} is not a {{{expected.scheme}}} hash"
        elif password != expected.hashes[user]:
            yield f"line {number}: the hash of {user} is not the one rendered for it"
        seen.add(user)
    yield from _missing("users", set(expected.hashes) - seen)


# --- Postfix texthash maps ------------------------------------------------------------------------


def _map_lines(content: str) -> Iterator[tuple[int, str, str] | tuple[int, None, str]]:
    """(line number, key, value) per logical line, as Postfix reads a texthash table; a line that
    starts with whitespace would continue the previous entry, which no template of ours wants."""
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            yield number, None, "starts with whitespace (Postfix reads it as part of the line before)"
            continue
        parts = line.split()
        if len(parts) != 2:
            yield number, None, f"expected `sender value` (2 fields), found {len(parts)}"
            continue
        yield number, parts[0].lower(), parts[1]


def _map(content: str, expected: Expected, check: _ValueCheck) -> Iterator[str]:
    seen: set[str] = set()
    for number, sender, value in _map_lines(content):
        if sender is None:
            yield f"line {number}: {value}"
        elif sender not in expected.senders:
            yield f"line {number}: sender {sender} was not rendered"
        elif sender in seen:
            yield f"line {number}: sender {sender} has a second line"
        else:
            seen.add(sender)
            problem = check(sender, value, expected)
            if problem:
                yield f"line {number}: {problem}"
    yield from _missing("senders", set(expected.senders) - seen)


class _ValueCheck(Protocol):
    def __call__(self, sender: str, value: str, expected: Expected, /) -> str | None: ...


def _login_value(sender: str, value: str, expected: Expected) -> str | None:
    owner = expected.senders[sender]
    return None if value == owner else f"sender {sender} should map to the login {owner}"


def _sasl_value(sender: str, value: str, expected: Expected) -> str | None:
    owner = expected.senders[sender]
    login, sep, key = value.partition(":")
    if not sep or login != owner:
        return f"sender {sender}: expected `{owner}:key`"
    if not hmac.compare_digest(key.encode(), expected.keys[owner].reveal().encode()):
        return f"sender {sender}: the key is not the one declared for {owner}"
    return None


def _relayhost_value(sender: str, value: str, expected: Expected) -> str | None:
    return None if value == expected.next_hop else f"sender {sender} should relay to {expected.next_hop}"


def _login_maps(content: str, expected: Expected) -> Iterator[str]:
    return _map(content, expected, _login_value)


def _sasl_passwd(content: str, expected: Expected) -> Iterator[str]:
    return _map(content, expected, _sasl_value)


def _relayhost_maps(content: str, expected: Expected) -> Iterator[str]:
    return _map(content, expected, _relayhost_value)


def _missing(what: str, names: set[str]) -> Iterator[str]:
    if names:
        listed = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        yield f"{len(names)} rendered {what} have no line: {listed}"
