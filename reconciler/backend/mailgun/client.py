"""`MailgunClient`: the Credentials API of one Mailgun account over `requests` (docs/mailgun.md).

- HTTP Basic `api:<account key>`; TLS verified; `http://` only to a loopback address (tests);
- every call within a deadline: 429 and 5xx are retried, waiting what `Retry-After` says (or a short
  backoff) but never past the deadline; a network error is retried for GET, PUT and DELETE, which
  are idempotent here, and for a POST only when nothing was sent;
- errors are the project's classes (reconciler/errors.py), quoting at most 200 characters of
  Mailgun's `{"message"}`, with the account key and any password of the request masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pydantic import SecretStr

from reconciler.config import is_loopback_host
from reconciler.errors import AuthError, ConfigError, NotFound, ServiceError, ServiceUnavailable
from reconciler.secrets import ApiKey

log = logging.getLogger("reconciler.backend.mailgun")

PAGE_LIMIT = 100  # the reference's default page size
MAX_DETAIL = 200  # characters of Mailgun's message quoted in an error
MAX_BACKOFF = 2.0  # between retries without Retry-After; the deadline bounds the total
SAME_PASSWORD_HINT = "same as old password"  # noqa: S105 (the refusal of a PUT that changes nothing)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NEVER_SENT = (requests.ConnectTimeout,)


@dataclass(frozen=True)
class Credential:
    login: str
    created_at: datetime | None


class MailgunClient:
    """Thread-safe for concurrent calls (one `requests.Session`). Close it, or use `with`."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        deadline: float = 60.0,
        timeout: tuple[float, float] = (5.0, 30.0),
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = checked_url(base_url)
        self._key = api_key
        self.deadline = deadline
        self.timeout = timeout
        self._sleep = sleep
        self.session = requests.Session()
        self.session.auth = ("api", api_key.get_secret_value())
        self.session.headers["Accept"] = "application/json"
        if ca_bundle:
            self.session.verify = ca_bundle

    def credentials(self, domain: str) -> list[Credential]:
        """Every credential of `domain`, page by page (skip/limit) until `total_count` is reached."""
        return list(self._pages(domain))

    def create(self, domain: str, login: str, password: ApiKey) -> bool:
        """True when created; False when the login already exists (the caller settles it). A POST
        whose answer was lost is settled by looking: there means False, absent means send again."""
        give_up = time.monotonic() + self.deadline
        while True:
            try:
                response = self._call(
                    "POST", _path(domain), data={"login": login, "password": password.reveal()}
                )
                break
            except _LostAnswer as lost:
                if self.exists(domain, login):
                    return False
                if time.monotonic() > give_up:
                    raise ServiceUnavailable(f"Mailgun: POST credential {login}: {lost}") from None
        if response.status_code == 400 and self.exists(domain, login):
            return False
        self._raise_for(response, "POST", f"credential {login}", password)
        return True

    def set_password(self, domain: str, login: str, password: ApiKey) -> bool:
        """True when changed; False when Mailgun refused it as the password already in place."""
        response = self._call("PUT", _path(domain, login), data={"password": password.reveal()})
        if response.status_code == 400 and SAME_PASSWORD_HINT in _message(response).lower():
            return False
        self._raise_for(response, "PUT", f"credential {login}", password)
        return True

    def delete(self, domain: str, login: str) -> bool:
        """True when deleted; False when it was already gone (success: Crossplane's contract)."""
        response = self._call("DELETE", _path(domain, login))
        if response.status_code == 404:
            return False
        self._raise_for(response, "DELETE", f"credential {login}")
        return True

    def exists(self, domain: str, login: str) -> bool:
        return any(c.login.lower() == login.lower() for c in self._pages(domain))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> MailgunClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MailgunClient({self.base_url!r})"

    def _pages(self, domain: str) -> Iterator[Credential]:
        skip = 0
        while True:
            params = {"skip": str(skip), "limit": str(PAGE_LIMIT)}
            response = self._call("GET", _path(domain), params=params)
            self._raise_for(response, "GET", f"credentials of {domain}")
            body = _json(response)
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ServiceError(f"Mailgun: GET credentials of {domain}: unexpected answer")
            yield from (_credential(item) for item in items if isinstance(item, dict))
            skip += len(items)
            if not items or skip >= int(body.get("total_count", 0)):
                return

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> requests.Response:
        """One request, retried on 429/5xx (and network errors where safe) until the deadline. A
        POST sent whose answer was lost raises _LostAnswer: only its caller can settle it."""
        give_up = time.monotonic() + self.deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(
                    method, self.base_url + path, params=params, data=data, timeout=self.timeout
                )
            except requests.RequestException as exc:
                if method == "POST" and not isinstance(exc, NEVER_SENT):
                    raise _LostAnswer(type(exc).__name__) from None
                self._wait(None, attempt, give_up, f"{method} {path}: {type(exc).__name__}")
                continue
            if response.status_code not in RETRY_STATUSES:
                return response
            retry_after = response.headers.get("Retry-After")
            self._wait(retry_after, attempt, give_up, f"{method} {path}: {response.status_code}")

    def _wait(self, retry_after: str | None, attempt: int, give_up: float, what: str) -> None:
        pause = _retry_after(retry_after)
        if pause is None:
            pause = min(MAX_BACKOFF, 0.05 * 2 ** (attempt - 1))
        if time.monotonic() + pause > give_up:
            raise ServiceUnavailable(
                f"Mailgun: {what}; still failing after {attempt} attempt(s) within the "
                f"{self.deadline:g} s deadline"
            )
        log.info("mailgun: %s; retrying in %.1f s", what, pause)
        self._sleep(pause)

    def _raise_for(
        self, response: requests.Response, method: str, what: str, secret: ApiKey | None = None
    ) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _truncated(self._redact(_message(response), secret))  # masked before cut: no key prefix
        message = f"Mailgun: {method} {what}: {status} {detail}".rstrip()
        if status in (401, 403):
            raise AuthError(message + " (check the account key)", status)
        if status == 404:
            raise NotFound(message, status)
        raise ServiceError(message, status)

    def _redact(self, text: str, secret: ApiKey | None) -> str:
        for value in (self._key.get_secret_value(), secret.reveal() if secret else ""):
            if value:
                text = text.replace(value, "***")
        return text


class _LostAnswer(Exception):
    """A POST was sent and its answer lost: it may or may not have been applied."""


def _message(response: requests.Response) -> str:
    body = _json(response)
    text = body.get("message") if isinstance(body, dict) else None
    if not isinstance(text, str):
        text = response.text
    return " ".join(text.split())


def _truncated(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _credential(item: dict[str, Any]) -> Credential:
    login = str(item.get("login") or item.get("mailbox") or "")
    created = item.get("created_at")
    try:
        when = parsedate_to_datetime(created) if isinstance(created, str) else None
    except (TypeError, ValueError):
        when = None
    return Credential(login, when)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _path(domain: str, login: str | None = None) -> str:
    path = f"/v3/domains/{quote(domain, safe='')}/credentials"
    return path if login is None else f"{path}/{quote(login, safe='@')}"


def checked_url(url: str) -> str:
    """https, or http to a loopback address only (the stand-in in tests): the account key is sent
    with every request."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"RECONCILER_MAILGUN_API_URL {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"RECONCILER_MAILGUN_API_URL {url!r}: plain http is allowed only to a loopback address"
        )
    return url.rstrip("/")
