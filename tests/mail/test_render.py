"""The pure render as tables of small cases; no daemons."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import Settings
from reconciler.errors import MailServerError
from reconciler.mail import (
    PASSWD,
    SASL_PASSWD,
    SENDER_LOGIN_MAPS,
    SENDER_RELAYHOST_MAPS,
    HashEntry,
    Rendered,
    default_templates_dir,
    render_mail,
    template_environment,
)
from reconciler.mail.hashing import BlfCryptHasher, CountingHasher
from reconciler.mail.render import parse_state, relay_next_hop
from reconciler.model import UserSpec
from reconciler.secrets import ApiKey

SECRET = b"test-secret"
TEMPLATES = template_environment(default_templates_dir())


class FakeHasher:
    scheme = "ARGON2ID"

    def __call__(self, key: ApiKey) -> str:
        return "{ARGON2ID}$argon2id$fake$" + str(len(key.reveal()))


def user(name: str, **fields: Any) -> UserSpec:
    data: dict[str, Any] = {"api_user": name, "api_key": {"from_env": "K"}, "role": "normal"}
    data["access"] = {"smtp": fields.pop("smtp", True)}
    return UserSpec.model_validate({**data, **fields})


def render(
    users: list[UserSpec], keys: dict[str, str], previous: dict[str, HashEntry] | None = None
) -> Rendered:
    return render_mail(
        users,
        {k: ApiKey(v) for k, v in keys.items()},
        Settings(relay_host="relay.example.net", relay_port=2525),
        previous or {},
        secret=SECRET,
        hasher=CountingHasher(FakeHasher()),
        templates=TEMPLATES,
    )


def lines(rendered: Rendered, path: str) -> list[str]:
    content = next(f.content for f in rendered.files if f.path == path)
    return [line for line in content.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(
    ("spec", "expected_users"),
    [
        (user("a@example.com"), 1),
        (user("a@example.com", locked=True), 0),
        (user("a@example.com", smtp=False), 0),
    ],
    ids=["smtp", "locked", "no-smtp"],
)
def test_only_unlocked_smtp_users_get_lines(spec: UserSpec, expected_users: int) -> None:
    rendered = render([spec], {"a@example.com": "Key12345"})
    assert rendered.users == expected_users
    for path in (PASSWD, SENDER_LOGIN_MAPS, SASL_PASSWD, SENDER_RELAYHOST_MAPS):
        assert len(lines(rendered, path)) == expected_users


def test_line_formats() -> None:
    spec = user("a@example.com", smtp_senders=["a@example.com", "@Sub.Example.com"])
    rendered = render([spec], {"a@example.com": "Key12345"})
    assert lines(rendered, PASSWD) == ["a@example.com:{ARGON2ID}$argon2id$fake$8"]
    assert lines(rendered, SENDER_LOGIN_MAPS) == [
        "@sub.example.com a@example.com",
        "a@example.com a@example.com",
    ]
    assert lines(rendered, SASL_PASSWD)[1] == "a@example.com a@example.com:Key12345"
    assert lines(rendered, SENDER_RELAYHOST_MAPS)[0] == "@sub.example.com [relay.example.net]:2525"
    modes = {f.path: f.mode for f in rendered.files}
    assert (modes[PASSWD], modes[SASL_PASSWD]) == (0o640, 0o600)


def test_no_key_outside_sasl_passwd_and_not_in_repr() -> None:
    rendered = render([user("a@example.com")], {"a@example.com": "Key12345"})
    for file in rendered.files:
        assert ("Key12345" in file.content) == (file.path == SASL_PASSWD)
        assert "Key12345" not in repr(file)


class SpyTemplates:
    """A template environment that records every value passed to a template."""

    def __init__(self) -> None:
        self.contexts: dict[str, dict[str, Any]] = {}

    def get_template(self, name: str) -> Any:
        template = TEMPLATES.get_template(name)
        spy = self

        class Recording:
            def render(self, **context: Any) -> str:
                spy.contexts[name] = context
                return template.render(**context)

        return Recording()


def test_no_repr_of_a_template_value_shows_a_key() -> None:
    spy = SpyTemplates()
    users = [user("a@example.com", smtp_senders=["a@example.com", "@a.example.com"]), user("b@example.com")]
    rendered = render_mail(
        users,
        {"a@example.com": ApiKey("Key12345"), "b@example.com": ApiKey("Key67890")},
        Settings(relay_host="relay.example.net", relay_port=2525),
        {},
        secret=SECRET,
        hasher=CountingHasher(FakeHasher()),
        templates=spy,  # type: ignore[arg-type]
    )
    assert set(spy.contexts) == {f"{f.path}.j2" for f in rendered.files if f.reloads is not None}
    for name, context in spy.contexts.items():
        for value in (context, *context.values()):
            assert "Key12345" not in repr(value), name
            assert "Key67890" not in repr(value), name
    # ... and sasl_passwd still gets the real keys.
    assert lines(rendered, SASL_PASSWD) == [
        "@a.example.com a@example.com:Key12345",
        "a@example.com a@example.com:Key12345",
        "b@example.com b@example.com:Key67890",
    ]


def test_a_template_that_prints_an_unrevealed_key_is_refused(tmp_path: Path) -> None:
    shutil.copytree(default_templates_dir(), tmp_path, dirs_exist_ok=True)
    sasl = tmp_path / f"{SASL_PASSWD}.j2"
    sasl.write_text(sasl.read_text().replace("row.api_key.reveal()", "row.api_key"))
    with pytest.raises(MailServerError, match="redacted key") as info:
        render_mail(
            [user("a@example.com")],
            {"a@example.com": ApiKey("Key12345")},
            Settings(),
            {},
            secret=SECRET,
            hasher=FakeHasher(),
            templates=template_environment(tmp_path),
        )
    assert "Key12345" not in str(info.value)


def test_unchanged_key_is_not_rehashed_and_changed_key_costs_one_hash() -> None:
    users = [user("a@example.com"), user("b@example.com")]
    keys = {"a@example.com": "Key12345", "b@example.com": "Key67890"}
    first = render(users, keys)
    assert first.hashes == 2
    state = next(f for f in first.files if f.path == "state/fingerprints.json")
    previous = parse_state(state.content)
    assert render(users, keys, previous).hashes == 0
    changed = render(users, {**keys, "b@example.com": "Key99999"}, previous)
    assert (changed.hashes, changed.rehashed) == (1, ("b@example.com",))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_user", "a@example.com\nevil@example.com"),
        ("api_user", "a@example.com evil"),
        ("api_user", "a:b@example.com"),
        ("api_user", "a@example.com\x00"),
        ("sender", "x@example.com\nevil@example.com"),
        ("sender", "x@example.com\tevil"),
        ("sender", "x:y@example.com"),
        ("sender", "x@example.com\u2028"),
    ],
)
def test_injection_attempts_are_refused(field: str, value: str) -> None:
    # model_construct skips validation: render must not rely on the model having run.
    base = user("a@example.com")
    if field == "api_user":
        spec = base.model_copy(update={"api_user": value})
        keys = {value: "Key12345"}
    else:
        spec = base.model_copy(update={"smtp_senders": (value,)})
        keys = {"a@example.com": "Key12345"}
    with pytest.raises(MailServerError, match="refusing to render"):
        render([spec], keys)


@pytest.mark.parametrize("key", ["Key 12345", "Key12345\nx@y.z k", "Key:12345", "short1"])
def test_bad_keys_are_refused_without_showing_them(key: str) -> None:
    with pytest.raises(MailServerError) as info:
        render([user("a@example.com")], {"a@example.com": key})
    assert key not in str(info.value)


def test_missing_key_and_shared_sender_are_errors() -> None:
    with pytest.raises(MailServerError, match="no key was resolved"):
        render([user("a@example.com")], {})
    users = [
        user("a@example.com", smtp_senders=["@example.com"]),
        user("b@example.com", smtp_senders=["@EXAMPLE.com"]),
    ]
    with pytest.raises(MailServerError, match="claimed by both"):
        render(users, {"a@example.com": "Key12345", "b@example.com": "Key67890"})


def test_relay_host_is_checked() -> None:
    with pytest.raises(MailServerError, match="relay_host"):
        render_mail(
            [],
            {},
            Settings(relay_host="evil host"),  # a line break is refused by Settings itself
            {},
            secret=SECRET,
            hasher=FakeHasher(),
            templates=TEMPLATES,
        )


def test_bcrypt_refuses_keys_it_would_truncate() -> None:
    with pytest.raises(MailServerError, match="72"):
        BlfCryptHasher(rounds=4)(ApiKey("a1" * 40))
    assert BlfCryptHasher(rounds=4)(ApiKey("Key12345")).startswith("{BLF-CRYPT}$2b$04$")


def test_hash_all_hashes_in_parallel_and_keeps_the_order() -> None:
    import threading
    import time

    from reconciler.mail.hashing import hash_all

    seen: set[str] = set()

    class SlowHasher:
        scheme = "ARGON2ID"

        def __call__(self, key: ApiKey) -> str:
            seen.add(threading.current_thread().name)
            time.sleep(0.05)  # releases the GIL, as argon2-cffi does while hashing
            return "{ARGON2ID}" + key.reveal()

    keys = [ApiKey(f"Key{i:04d}x") for i in range(8)]
    assert hash_all(SlowHasher(), keys, workers=4) == ["{ARGON2ID}" + k.reveal() for k in keys]
    assert len(seen) > 1


@pytest.mark.parametrize(
    ("settings", "next_hop"),
    [
        (Settings(backend="mailgun"), "[smtp.mailgun.org]:587"),
        (Settings(backend="mailgun", mailgun_region="eu"), "[smtp.eu.mailgun.org]:587"),
        (
            Settings(backend="mailgun", mailgun_smtp_host="127.0.0.1", mailgun_smtp_port=2587),
            "[127.0.0.1]:2587",
        ),
        (Settings(relay_host="relay.example.net", relay_port=2525), "[relay.example.net]:2525"),
    ],
)
def test_the_relay_hop_comes_from_the_backend(settings: Settings, next_hop: str) -> None:
    assert relay_next_hop(settings) == next_hop
