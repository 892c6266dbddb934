"""The structural check of rendered files, as a table of small cases; no daemons."""

from __future__ import annotations

import pytest

from reconciler.errors import MailServerError
from reconciler.mail import PASSWD, SASL_PASSWD, SENDER_LOGIN_MAPS, SENDER_RELAYHOST_MAPS, RenderedFile
from reconciler.mail.render import Expected
from reconciler.mail.verify import verify
from reconciler.secrets import ApiKey

KEY = "Key12345"
HASH = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
EXPECTED = Expected(
    scheme="ARGON2ID",
    hashes={"a@example.com": HASH},
    senders={"a@example.com": "a@example.com", "@a.example.com": "a@example.com"},
    keys={"a@example.com": ApiKey(KEY)},
    next_hop="[relay.example.net]:2525",
)
GOOD = {
    PASSWD: f"# comment\na@example.com:{HASH}\n",
    SENDER_LOGIN_MAPS: "a@example.com a@example.com\n@a.example.com a@example.com\n",
    SASL_PASSWD: f"a@example.com a@example.com:{KEY}\n@a.example.com a@example.com:{KEY}\n",
    SENDER_RELAYHOST_MAPS: (
        "a@example.com [relay.example.net]:2525\n@a.example.com [relay.example.net]:2525\n"
    ),
}


def files(**overrides: str) -> list[RenderedFile]:
    contents = {**GOOD, **{path: overrides[name] for name, path in _NAMES.items() if name in overrides}}
    return [RenderedFile(path, text, 0o600, None, None) for path, text in contents.items()]


_NAMES = {"passwd": PASSWD, "login": SENDER_LOGIN_MAPS, "sasl": SASL_PASSWD, "relay": SENDER_RELAYHOST_MAPS}


def test_the_stock_shape_passes() -> None:
    verify(files(), EXPECTED)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"passwd": f"a@example.com{HASH}\n"}, "users.passwd: line 1: expected `api_user:{ARGON2ID}hash`"),
        ({"passwd": f"a@example.com:{HASH}\na@example.com:{HASH}\n"}, "line 2: a@example.com has a second"),
        ({"passwd": "a@example.com:{BLF-CRYPT}$2b$10$x\n"}, "is not a {ARGON2ID} hash"),
        ({"passwd": "a@example.com:{ARGON2ID}$other\n"}, "is not the one rendered for it"),
        ({"passwd": "# nobody\n"}, "1 rendered users have no line: a@example.com"),
        ({"login": "a@example.com\n@a.example.com a@example.com\n"}, "login_maps: line 1: expected `sender"),
        ({"login": "a@example.com b@example.com\n@a.example.com a@example.com\n"}, "map to the login a@"),
        ({"login": "a@example.com a@example.com\n a@example.com\n"}, "line 2: starts with whitespace"),
        ({"login": "a@example.com a@example.com\n"}, "1 rendered senders have no line: @a.example.com"),
        (
            {"login": GOOD[SENDER_LOGIN_MAPS] + "x@example.com a@example.com\n"},
            "sender x@example.com was not",
        ),
        (
            {"sasl": f"a@example.com a@example.com{KEY}\n@a.example.com a@example.com:{KEY}\n"},
            "`a@example.com:key`",
        ),
        (
            {"sasl": "a@example.com a@example.com:Other123\n@a.example.com a@example.com:Other123\n"},
            "not the one declared",
        ),
        (
            {"relay": "a@example.com relay.example.net:2525\n@a.example.com [relay.example.net]:2525\n"},
            "should relay to",
        ),
    ],
    ids=[
        "passwd-no-colon",
        "passwd-duplicate",
        "passwd-other-scheme",
        "passwd-other-hash",
        "passwd-missing-user",
        "login-no-value",
        "login-wrong-owner",
        "login-continuation",
        "login-missing-sender",
        "login-extra-sender",
        "sasl-no-colon",
        "sasl-wrong-key",
        "relay-wrong-next-hop",
    ],
)
def test_malformed_files_are_refused_with_file_and_line(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(MailServerError) as info:
        verify(files(**overrides), EXPECTED)
    assert message in str(info.value)
    assert "nothing was written" in str(info.value)
    assert KEY not in str(info.value)
    assert "Other123" not in str(info.value)
    assert HASH not in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(MailServerError) as info:
        verify(files(passwd="x\n", relay="x y z\n"), EXPECTED)
    text = str(info.value)
    assert "users.passwd: line 1" in text
    assert "sender_relayhost_maps: line 1: expected `sender value` (2 fields), found 3" in text
