"""Pure render: declared users + resolved keys -> the mail-server files, as values.

Nothing here touches the disk or runs a command (the installer does); the only costly call is the
hasher, and it runs only for a user whose key fingerprint differs from the previous render's.
Every value that reaches a map or passwd line is re-checked here, even though the model validated
it: a UserSpec can be built without validation, and one smuggled newline or colon would add a login.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jinja2

import reconciler
from reconciler.config import Settings, is_loopback_host, relay_endpoint, relay_tls_required
from reconciler.errors import MailServerError
from reconciler.mail.hashing import CountingHasher, Hasher, hash_all
from reconciler.model import UserSpec
from reconciler.secrets import KEY_RE, ApiKey, fingerprint

# Pinned file names under the mail directory (docs/mail.md), plus our own state file.
PASSWD = "dovecot/users.passwd"  # noqa: S105 (a file name)
SENDER_LOGIN_MAPS = "postfix/sender_login_maps"
SASL_PASSWD = "postfix/sasl_passwd"  # noqa: S105 (a file name)
SENDER_RELAYHOST_MAPS = "postfix/sender_relayhost_maps"
STATE = "state/fingerprints.json"
STATE_VERSION = 1
# The files the mail server reads, as opposed to our bookkeeping (STATE).
MAIL_SERVER_FILES = (PASSWD, SENDER_LOGIN_MAPS, SASL_PASSWD, SENDER_RELAYHOST_MAPS)
# Where the operator snippets put the Dovecot auth socket for Postfix (Debian's queue directory).
DEFAULT_POSTFIX_QUEUE_DIR = Path("/var/spool/postfix")
POSTFIX_AUTH_SOCKET = "private/auth"

Daemon = Literal["postfix", "dovecot"]

# Whitespace, colons and control characters are field or line separators in texthash maps and
# passwd-files: addresses and hashes are matched against whitelists that exclude them all.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# A whitelist, so checking is linear and cheap at 10,000 users; the model's stricter address rules
# already ran on anything loaded from YAML.
_ADDRESS = re.compile(r"[A-Za-z0-9_%+.-]*@[A-Za-z0-9.-]+")
_HASH_CHARS = re.compile(r"^\{[A-Z0-9-]+\}[A-Za-z0-9$./=,+-]+$")


@dataclass(frozen=True)
class RenderedFile:
    """One file under the mail directory. `content` is left out of repr: sasl_passwd holds keys."""

    path: str
    content: str = field(repr=False)
    mode: int
    group: str | None  # None: root's group
    reloads: Daemon | None  # which daemon must be reloaded when the file changes


@dataclass(frozen=True)
class HashEntry:
    """What the previous render stored for a user: the keyed fingerprint of its key and the hash."""

    fingerprint: str
    hash: str = field(repr=False)


@dataclass(frozen=True)
class Expected:
    """What the templates were given, so reconciler.mail.verify can check the files say exactly it."""

    scheme: str
    hashes: Mapping[str, str] = field(repr=False)  # api_user -> "{SCHEME}..."
    senders: Mapping[str, str]  # sender (lower case) -> api_user
    keys: Mapping[str, ApiKey] = field(repr=False)  # api_user -> key
    next_hop: str


class Rendered(NamedTuple):
    files: tuple[RenderedFile, ...]
    hashes: int  # how many keys were hashed in this render
    users: int  # how many users got lines
    rehashed: tuple[str, ...]  # api_users whose hash was computed in this render
    expected: Expected  # checked by verify() before anything is written


class _SenderRow(NamedTuple):
    """A sender line of sender_login_maps and sender_relayhost_maps: no key."""

    sender: str
    api_user: str


class _CredentialRow(NamedTuple):
    """A sasl_passwd line. The key stays a redacted ApiKey, so no repr of a row (a template's
    `{{ row }}`, a traceback's locals) shows it; only the sasl_passwd template calls
    `row.api_key.reveal()`, and only it gets these rows."""

    sender: str
    api_user: str
    api_key: ApiKey


# What an ApiKey prints as: a template that prints `row.api_key` instead of revealing it.
_REDACTED_KEY = str(ApiKey(""))


def default_templates_dir() -> Path:
    """`reconciler/templates/`: package data, so a checkout, an editable install and an installed
    wheel all find the same files. `--templates DIR` or the `templates_dir` setting replace it."""
    return Path(reconciler.__file__).resolve().parent / "templates"


def templates_dir_for(settings: Settings, templates_dir: Path | None = None) -> Path:
    """The templates a render uses: the explicit `templates_dir` (`render --templates`), else the
    `templates_dir` setting (RECONCILER_TEMPLATES_DIR or reconciler.yaml), else the packaged ones."""
    if templates_dir is None and settings.templates_dir is not None:
        templates_dir = Path(settings.templates_dir)
    chosen = default_templates_dir() if templates_dir is None else templates_dir
    if not chosen.is_dir():
        raise MailServerError(
            f"templates directory {chosen} is not a directory "
            "(check --templates, templates_dir in reconciler.yaml or RECONCILER_TEMPLATES_DIR)"
        )
    return chosen.resolve()


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path) -> jinja2.Environment:
    # Plain-text config files: HTML autoescaping would corrupt them, and every value is checked
    # against the separators above before it reaches a template.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_mail(
    users: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    settings: Settings,
    previous: Mapping[str, HashEntry],
    *,
    secret: bytes,
    hasher: Hasher,
    templates: jinja2.Environment,
) -> Rendered:
    """Files for every unlocked user with SMTP access. `previous` comes from the last render's state
    file: a user whose key fingerprint is unchanged keeps its hash, so only changed keys are hashed."""
    smtp_users = sorted(
        (u for u in users if u.access.smtp and not u.locked), key=lambda u: u.api_user.lower()
    )
    _refuse_duplicate_users(smtp_users)
    user_keys = {u.api_user: _checked_key(u.api_user, keys) for u in smtp_users}
    counting = CountingHasher(hasher)
    entries = _hash_entries(user_keys, previous, secret, counting)
    credentials = _sender_rows(smtp_users, user_keys)
    rows = [_SenderRow(row.sender, row.api_user) for row in credentials]
    next_hop = relay_next_hop(settings)
    files = (
        _render(templates, PASSWD, 0o640, settings.mail_file_group, "dovecot", entries=_passwd_rows(entries)),
        _render(templates, SENDER_LOGIN_MAPS, 0o644, None, "postfix", rows=rows),
        _render(templates, SASL_PASSWD, 0o600, None, "postfix", rows=credentials),
        _render(templates, SENDER_RELAYHOST_MAPS, 0o644, None, "postfix", rows=rows, next_hop=next_hop),
        RenderedFile(STATE, dump_state(entries), 0o600, None, None),
    )
    expected = Expected(
        hasher.scheme,
        {u: e.hash for u, e in entries.items()},
        {r.sender: r.api_user for r in credentials},
        user_keys,
        next_hop,
    )
    rehashed = tuple(u for u, e in entries.items() if u not in previous or previous[u] != e)
    return Rendered(files, counting.calls, len(smtp_users), rehashed, expected)


def render_snippets(
    mail_dir: Path,
    settings: Settings,
    templates: jinja2.Environment,
    *,
    postfix_queue_dir: Path = DEFAULT_POSTFIX_QUEUE_DIR,
) -> dict[str, str]:
    """The lines an operator adds once to dovecot.conf and main.cf (docs/mail.md). Postfix's smtpd
    finds the Dovecot auth socket at `private/auth` under its queue directory (`postconf -h
    queue_directory`), so Dovecot's listener for it is `<postfix_queue_dir>/private/auth`."""
    context = {
        "mail_dir": str(mail_dir),
        "next_hop": relay_next_hop(settings),
        "postfix_auth_socket": str(postfix_queue_dir / POSTFIX_AUTH_SOCKET),
        "postfix_sasl_path": POSTFIX_AUTH_SOCKET,
        # TLS on the relay hop unless the relay is on loopback (docs/mail.md "TLS on the relay hop"),
        # the smoke check's rule too; a backend whose relay requires TLS (Mailgun) never gets the exception.
        "relay_on_loopback": is_loopback_host(relay_endpoint(settings)[0])
        and not relay_tls_required(settings),
    }
    return {
        name: templates.get_template(f"snippets/{name}.j2").render(**context)
        for name in ("dovecot-passdb.conf", "postfix-main.cf")
    }


def relay_next_hop(settings: Settings) -> str:
    host, port = relay_endpoint(settings)
    if not _HOSTNAME.match(host):
        setting = "mailgun_smtp_host" if settings.backend == "mailgun" else "relay_host"
        raise MailServerError(f"{setting} {host!r} must be a host name or an IPv4 address")
    return f"[{host}]:{port}"


def parse_state(text: str) -> dict[str, HashEntry]:
    """The previous render's fingerprints and hashes; anything unreadable means "hash again"."""
    try:
        data = json.loads(text)
        users = data["users"] if data.get("version") == STATE_VERSION else {}
        return {str(u): HashEntry(str(e["fingerprint"]), str(e["hash"])) for u, e in users.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def dump_state(entries: Mapping[str, HashEntry]) -> str:
    users = {u: {"fingerprint": e.fingerprint, "hash": e.hash} for u, e in sorted(entries.items())}
    # Compact on purpose: json's indenting encoder is pure Python and costs ~0.1 s at 10,000 users.
    return json.dumps({"version": STATE_VERSION, "users": users}, separators=(",", ":")) + "\n"


def _hash_entries(
    keys: Mapping[str, ApiKey], previous: Mapping[str, HashEntry], secret: bytes, hasher: Hasher
) -> dict[str, HashEntry]:
    """A user whose key fingerprint (and scheme) is unchanged keeps its hash; the others are hashed
    together on every CPU (the first render of a new gateway hashes everyone)."""
    fingerprints = {u: fingerprint(key, secret) for u, key in keys.items()}
    kept = {
        u: previous[u].hash for u, fp in fingerprints.items() if _reusable(previous.get(u), fp, hasher.scheme)
    }
    todo = [u for u in keys if u not in kept]
    fresh = dict(zip(todo, hash_all(hasher, [keys[u] for u in todo]), strict=True))
    return {u: HashEntry(fingerprints[u], _checked_hash(u, kept.get(u) or fresh[u])) for u in keys}


def _reusable(old: HashEntry | None, fp: str, scheme: str) -> bool:
    return old is not None and old.fingerprint == fp and old.hash.startswith("{" + scheme + "}")


def _passwd_rows(entries: Mapping[str, HashEntry]) -> list[dict[str, str]]:
    return [{"api_user": u, "hash": e.hash} for u, e in entries.items()]


def _sender_rows(users: Iterable[UserSpec], keys: Mapping[str, ApiKey]) -> list[_CredentialRow]:
    owners: dict[str, _CredentialRow] = {}
    for user in users:
        for sender in user.senders():
            # Postfix folds map keys to lower case, so two spellings are one key.
            folded = _checked(sender, "smtp_senders entry", user.api_user).lower()
            if folded in owners:
                raise MailServerError(
                    f"sender {folded} is claimed by both {owners[folded].api_user} and {user.api_user}: "
                    "Postfix can relay each sender with only one API user's credentials"
                )
            owners[folded] = _CredentialRow(folded, user.api_user, keys[user.api_user])
    return sorted(owners.values(), key=lambda row: row.sender)


def _refuse_duplicate_users(users: Sequence[UserSpec]) -> None:
    seen: set[str] = set()
    for user in users:
        name = _checked(user.api_user, "api_user", user.api_user).lower()
        if name in seen:
            raise MailServerError(f"api_user {user.api_user} is declared twice (names are case-insensitive)")
        seen.add(name)


def _checked(value: str, what: str, owner: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value) or value.startswith("."):
        raise MailServerError(
            f"refusing to render {what} {value!r} of {owner!r}: only plain addresses are allowed "
            "(no whitespace, colon or control character)"
        )
    return value


def key_for(keys: Mapping[str, ApiKey], api_user: str) -> ApiKey | None:
    """Keys may be keyed by api_user as written or in lower case (the engine's ResolvedKeys)."""
    return keys.get(api_user) or keys.get(api_user.lower())


def needs_mail_lines(user: UserSpec) -> bool:
    return user.access.smtp and not user.locked


def _checked_key(api_user: str, keys: Mapping[str, ApiKey]) -> ApiKey:
    key = key_for(keys, api_user)
    if key is None:
        raise MailServerError(f"no key was resolved for {api_user}, which has SMTP access")
    # The message must not show the key, only that it broke the rule.
    if not isinstance(key, ApiKey) or not KEY_RE.match(key.reveal()):
        raise MailServerError(f"refusing to render the key of {api_user}: it breaks the key rule")
    return key


def _checked_hash(api_user: str, value: str) -> str:
    if not _HASH_CHARS.fullmatch(value):
        raise MailServerError(f"refusing to render the password hash of {api_user}: unexpected characters")
    return value


def _render(
    templates: jinja2.Environment,
    path: str,
    mode: int,
    group: str | None,
    reloads: Daemon | None,
    **context: Any,
) -> RenderedFile:
    try:
        content = templates.get_template(path + ".j2").render(**context)
    except jinja2.TemplateError as exc:
        # Template errors never include context values, so no key can leak through the message.
        raise MailServerError(f"template {path}.j2 failed: {type(exc).__name__}: {exc}") from None
    if _REDACTED_KEY in content:
        # A (custom) template printed a key without revealing it: the relay would get a wrong key.
        raise MailServerError(
            f"template {path}.j2 printed a redacted key: "
            "write {{ row.api_key.reveal() }} in postfix/sasl_passwd.j2"
        )
    return RenderedFile(path, content, mode, group, reloads)
