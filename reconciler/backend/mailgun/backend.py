"""`MailgunBackend`: the seam (reconciler/backend/base.py) over Mailgun's SMTP credentials.

An API user is a credential: `api_user` is its login (an address at one of the configured sending
domains, which is also the domain its calls go to) and `api_key` its password. Mailgun stores
nothing else, so every other field is either fixed (`FIXED`: what any Mailgun credential is) or
refused by the plan. No annotations: key fingerprints live in the state store.

Locks: Mailgun has none. With `mailgun_lock_by_delete`, locking deletes the credential and unlocking
re-creates it with the declared key (`set_key` with `changes={"locked": False}`, since `unlock`
alone has no key to give).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from reconciler.backend.base import (
    Backend,
    Capabilities,
    GatewayReports,
    KeyUpdate,
    Leases,
    OperationLog,
    RunIdentity,
    Users,
)
from reconciler.backend.mailgun.client import Credential, MailgunClient
from reconciler.backend.mailgun.rules import desired_problems, domain_of, key_problem
from reconciler.config import Settings, mailgun_api_base, mailgun_domains
from reconciler.desired import DesiredState
from reconciler.errors import ConfigError, Problem, SecretError, ServiceError
from reconciler.keyfiles import read_key_file
from reconciler.model import LiveAccess, LiveUser
from reconciler.secrets import ApiKey

_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")

# What every Mailgun SMTP credential is: an SMTP login that cannot use the HTTP API (that takes an
# account or domain sending key), with no data permissions, never locked (there is no lock).
FIXED: dict[str, Any] = {
    "access.smtp": True,
    "access.http_api": False,
    "access.own_data_only": False,
    "operation": False,
}

CAPABILITIES = Capabilities(
    fields=frozenset(),
    fixed={**FIXED, "locked": False},
    key_update=KeyUpdate.IN_PLACE,
    key_reuse_refused=True,
    can_list=True,
    annotations=False,
    locks=False,
)
LOCK_BY_DELETE = Capabilities(
    fields=frozenset({"locked"}),
    fixed=FIXED,
    key_update=KeyUpdate.IN_PLACE,
    key_reuse_refused=True,
    can_list=True,
    annotations=False,
    locks=True,
)


def capabilities_for(settings: Settings) -> Capabilities:
    return LOCK_BY_DELETE if settings.mailgun_lock_by_delete else CAPABILITIES


def live_user(login: str, credential: Credential | None = None, *, locked: bool = False) -> LiveUser:
    # Mailgun has no roles: the empty role is never compared (role is not a stored field).
    return LiveUser(
        api_user=login,
        role="",
        access=LiveAccess(smtp=not locked),
        locked=locked,
        created_at=credential.created_at if credential else None,
    )


class _Users:
    def __init__(self, client: MailgunClient, domains: tuple[str, ...], lock_by_delete: bool) -> None:
        self._client = client
        self._domains = domains
        self._lock_by_delete = lock_by_delete

    def list(self) -> list[LiveUser]:
        found = [live_user(c.login, c) for d in self._domains for c in self._client.credentials(d)]
        return sorted(found, key=lambda u: u.api_user.lower())

    def get(self, api_user: str) -> LiveUser | None:
        domain = self._domain(api_user)
        match = [c for c in self._client.credentials(domain) if c.login.lower() == api_user.lower()]
        return live_user(match[0].login, match[0]) if match else None

    def create(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        self._refuse_lock(api_user, attributes)
        if attributes.get("locked"):
            return live_user(api_user, locked=True)  # locked by delete: nothing to create
        self._put_in_place(api_user, api_key)
        return live_user(api_user)

    def update(
        self,
        api_user: str,
        changes: dict[str, Any],
        *,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        self._refuse_lock(api_user, changes)
        if changes.get("locked") is True:
            return self.lock(api_user)
        if changes.get("locked") is False:
            raise ServiceError(f"unlocking {api_user} re-creates its Mailgun credential: it needs the key")
        return self.get(api_user) or live_user(api_user)

    def set_key(
        self,
        api_user: str,
        api_key: ApiKey,
        *,
        changes: dict[str, Any] | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        changes = dict(changes or {})
        self._refuse_lock(api_user, changes)
        if changes.get("locked") is True:
            return self.lock(api_user)
        self._check_key(api_user, api_key)
        domain = self._domain(api_user)
        if changes.get("locked") is False:  # unlock by re-creating it with the declared key
            self._put_in_place(api_user, api_key)
        else:
            # A refusal of the password already in place means it is in place: applied.
            self._client.set_password(domain, api_user, api_key)
        return live_user(api_user)

    def lock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        if not self._lock_by_delete:
            raise ServiceError(
                f"Mailgun cannot lock {api_user}: set mailgun_lock_by_delete to lock by deleting it"
            )
        self._client.delete(self._domain(api_user), api_user)
        return live_user(api_user, locked=True)

    def unlock(self, api_user: str, *, if_match: str | None = None) -> LiveUser:
        raise ServiceError(
            f"unlocking {api_user} re-creates its Mailgun credential: use set_key with locked: false"
        )

    def delete(self, api_user: str, *, if_match: str | None = None) -> None:
        self._client.delete(self._domain(api_user), api_user)  # already gone is success

    def _put_in_place(self, api_user: str, api_key: ApiKey) -> None:
        """Create; when the login already exists (a retry after a lost answer, or an import), set
        the password instead, whose same-password refusal also means "in place"."""
        self._check_key(api_user, api_key)
        domain = self._domain(api_user)
        if not self._client.create(domain, api_user, api_key):
            self._client.set_password(domain, api_user, api_key)

    def _domain(self, api_user: str) -> str:
        domain = domain_of(api_user)
        if domain not in self._domains:
            raise ConfigError(
                f"{api_user}: {domain} is not a configured Mailgun sending domain "
                f"(RECONCILER_MAILGUN_DOMAINS: {', '.join(self._domains) or 'unset'})"
            )
        return domain

    def _check_key(self, api_user: str, api_key: ApiKey) -> None:
        problem = key_problem(api_user, api_key)
        if problem:
            raise SecretError(problem)

    def _refuse_lock(self, api_user: str, values: dict[str, Any]) -> None:
        """Fields Mailgun cannot store are the plan's to refuse (file:line), or to note when
        `unsupported_fields: note`; here they are left out, except a lock: silently leaving a
        credential that should be locked usable is never right."""
        if values.get("locked") is True and not self._lock_by_delete:
            raise ServiceError(
                f"Mailgun cannot lock {api_user}: set mailgun_lock_by_delete to lock by deleting it"
            )


class MailgunBackend:
    name = "mailgun"
    leases: Leases | None = None
    operation_log: OperationLog | None = None
    gateways: GatewayReports | None = None

    def __init__(
        self, client: MailgunClient, domains: tuple[str, ...], *, lock_by_delete: bool = False
    ) -> None:
        if not domains:
            raise ConfigError(
                "set RECONCILER_MAILGUN_DOMAINS: the sending domains whose credentials are managed"
            )
        bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
        if bad:
            raise ConfigError(f"RECONCILER_MAILGUN_DOMAINS: not a domain name: {', '.join(map(repr, bad))}")
        self.client = client
        self.domains = domains
        self.capabilities = LOCK_BY_DELETE if lock_by_delete else CAPABILITIES
        self.users: Users = _Users(client, domains, lock_by_delete)

    def identify(self, identity: RunIdentity) -> None:
        """Mailgun records nothing about who wrote; the local audit log does."""

    def use_lease(self, token: str) -> None:
        raise ServiceError("Mailgun has no leases; the run holds the local lock")

    def lose_lease(self, reason: str) -> None:
        """No lease, nothing to lose."""

    @property
    def lease_lost(self) -> str | None:
        return None

    def use_api_key(self, api_key: ApiKey) -> None:
        """The account key is not an API user's key: nothing rotates it."""

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        return False

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"MailgunBackend({self.client!r}, domains={list(self.domains)})"


def account_key(settings: Settings, env: Mapping[str, str] | None = None) -> SecretStr:
    """The account key: from the file `mailgun_api_key_file` when set, else from the variable
    RECONCILER_MAILGUN_API_KEY_ENV names; never a value in a file in git."""
    if settings.mailgun_api_key_file:
        path = Path(settings.mailgun_api_key_file)
        raw = read_key_file(path, label="Mailgun account key file")
        return _checked_account_key(raw.decode("utf-8", errors="replace").strip(), f"file {path}")
    environ = os.environ if env is None else env
    name = settings.mailgun_api_key_env
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"the Mailgun account key is not set: put it in ${name} "
            "(or name another variable in RECONCILER_MAILGUN_API_KEY_ENV, or a file in "
            "RECONCILER_MAILGUN_API_KEY_FILE)"
        )
    return _checked_account_key(value, f"${name}")


def _checked_account_key(value: str, source: str) -> SecretStr:
    # It goes into an HTTP Basic header; the message never repeats it.
    if not value or not value.isascii() or not value.isprintable():
        raise ConfigError(f"{source} does not hold a Mailgun key (one line of printable ASCII)")
    return SecretStr(value)


class _Factory:
    name = "mailgun"
    summary = "Mailgun SMTP credentials of the configured sending domains (docs/mailgun.md)"
    capabilities = CAPABILITIES

    def declared_problems(self, desired: DesiredState, settings: Settings) -> list[Problem]:
        """Refusals of users/ this backend adds to the capability checks (file:line)."""
        return desired_problems(desired, settings)

    def open(self, settings: Settings) -> Backend:
        client = MailgunClient(
            mailgun_api_base(settings),
            account_key(settings),
            deadline=settings.change_deadline,
            timeout=(settings.connect_timeout, settings.read_timeout),
            ca_bundle=settings.ca_bundle,
        )
        return MailgunBackend(
            client, mailgun_domains(settings), lock_by_delete=settings.mailgun_lock_by_delete
        )


FACTORY = _Factory()
