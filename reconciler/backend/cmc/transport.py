"""The three ways the cmc-console backend looks at a Customers Mail Cloud account (docs/cmc.md):

- `smtp_probe`: SMTP AUTH on the relay with a user's own api_user/api_key (STARTTLS required; plain
  text only to loopback). Success proves: the user exists, the key is right, SMTP is checked, the
  account is unlocked. It sends no mail (QUIT right after AUTH).
- `http_probe`: one Transactional Email request with the user's own credentials, `auditlogs/list`
  (the smallest page, today only). 200: HTTP-API on, key right, role API group Admin; 403: the
  same but role Normal; 401: refused (absent, wrong key, locked or HTTP-API off: not told apart).
- `console_operations`: `auditlogs/list` with type=operation under the admin credential.

Each probe waits its turn (`Throttle`, RECONCILER_CMC_PROBE_RATE) and counts the failed
authentications it caused, since a real service may throttle or alert on them.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests

from reconciler.config import Settings, service_api_key
from reconciler.errors import AuthError, ConfigError, ServiceError, ServiceUnavailable
from reconciler.secrets import ApiKey

TIMEOUT_S = 15.0
WINDOW_DAYS = 31  # auditlogs/list: a period of at most 31 days per request
KEPT_DAYS = 90  # and logs are kept 90 days
PAGE_ROWS = 100


class Seen(StrEnum):
    OK = "ok"  # authenticated
    REFUSED = "refused"  # authentication refused
    NOT_ADMIN = "not_admin"  # authenticated, but the request needs an API group administrator


@dataclass(frozen=True)
class ProbeResult:
    channel: str  # "smtp" | "http_api"
    seen: Seen
    detail: str  # what the service said, without any credential

    def __str__(self) -> str:
        return f"{self.channel}: {self.seen.value} ({self.detail})"


@dataclass(frozen=True)
class Endpoints:
    api_url: str
    relay_host: str
    relay_port: int
    server_composition: str | None
    rate: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        if not settings.cmc_relay_host:
            raise ConfigError(
                "the cmc-console backend needs RECONCILER_CMC_RELAY_HOST (cmc_relay_host): the relay "
                "host your console shows for your plan (docs/cmc.md)"
            )
        url = _checked_url(settings.cmc_api_url)
        return cls(
            url,
            settings.cmc_relay_host,
            settings.cmc_relay_port,
            settings.cmc_server_composition,
            settings.cmc_probe_rate,
        )

    @property
    def relay_is_loopback(self) -> bool:
        return is_loopback(self.relay_host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname or parts.scheme not in {"http", "https"}:
        raise ConfigError("RECONCILER_CMC_API_URL must be an https URL without credentials")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"refusing plain http to {parts.hostname}: RECONCILER_CMC_API_URL must be https")
    return url.rstrip("/")


class Throttle:
    """At most `rate` probes a second, across threads."""

    def __init__(self, rate: float) -> None:
        self._gap = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = max(0.0, self._next - now)
            self._next = max(now, self._next) + self._gap
        if delay:
            time.sleep(delay)


class Transport:
    """One run's connection to the account: probes, the audit log, and the counters a run reports."""

    def __init__(self, endpoints: Endpoints, admin_user: str | None, admin_key: ApiKey | None) -> None:
        self.endpoints = endpoints
        self._admin = (admin_user, admin_key) if admin_user and admin_key else None
        self._throttle = Throttle(endpoints.rate)
        self._session = requests.Session()
        self._counts_lock = threading.Lock()
        self.failed_authentications = 0
        self.probes = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Transport:
        secret = service_api_key(settings)
        key = ApiKey(secret.get_secret_value()) if secret is not None else None
        return cls(Endpoints.from_settings(settings), settings.api_user, key)

    @property
    def admin_user(self) -> str | None:
        return self._admin[0] if self._admin else None

    def smtp_probe(self, api_user: str, key: ApiKey) -> ProbeResult:
        self._throttle.wait()
        seen, detail = self._smtp_auth(api_user, key)
        return self._count(ProbeResult("smtp", seen, detail))

    def http_probe(self, api_user: str, key: ApiKey) -> ProbeResult:
        self._throttle.wait()
        today = date.today().isoformat()
        params = {"type": "login", "start_date": today, "end_date": today, "p": "0", "r": "1"}
        response = self._post("auditlogs/list", api_user, key, params)
        if response.status_code == 200:
            result = ProbeResult("http_api", Seen.OK, "auditlogs/list answered: API group Admin")
        elif response.status_code == 403:
            result = ProbeResult("http_api", Seen.NOT_ADMIN, "authenticated; auditlogs/list refused: Normal")
        elif response.status_code == 401:
            result = ProbeResult("http_api", Seen.REFUSED, f"HTTP 401 {_code(response)}")
        else:
            raise ServiceError(
                f"Transactional Email API answered HTTP {response.status_code}", response.status_code
            )
        return self._count(result)

    def console_operations(self, since: date, until: date) -> list[dict[str, Any]]:
        """Every operation record from `since` to `until` (both included), newest window last;
        at most 90 days back, in windows of 31 days, every page."""
        if self._admin is None:
            raise ConfigError(
                "reading the console's audit log needs RECONCILER_API_USER/KEY of an API group Admin"
            )
        since = max(since, until - timedelta(days=KEPT_DAYS - 1))
        records: list[dict[str, Any]] = []
        start = since
        while start <= until:
            end = min(until, start + timedelta(days=WINDOW_DAYS - 1))
            records += self._operations_window(start, end)
            start = end + timedelta(days=1)
        return records

    def _operations_window(self, start: date, end: date) -> list[dict[str, Any]]:
        assert self._admin is not None
        records: list[dict[str, Any]] = []
        page = 0
        while True:
            params = {"type": "operation", "start_date": start.isoformat(), "end_date": end.isoformat()}
            response = self._post(
                "auditlogs/list", *self._admin, {**params, "p": str(page), "r": str(PAGE_ROWS)}
            )
            if response.status_code in (401, 403):
                raise AuthError(
                    f"the audit log refused {self._admin[0]} (HTTP {response.status_code}): it needs an "
                    "API group Admin with HTTP-API access",
                    response.status_code,
                )
            if response.status_code != 200:
                raise ServiceError(
                    f"auditlogs/list answered HTTP {response.status_code}", response.status_code
                )
            rows = _json(response).get("operationlogs", [])
            records += [r for r in rows if isinstance(r, dict)]
            if len(rows) < PAGE_ROWS:
                return records
            page += 1

    def _post(self, resource: str, api_user: str, key: ApiKey, params: dict[str, str]) -> requests.Response:
        url = f"{self.endpoints.api_url}/{resource}.json"
        data = {"api_user": api_user, "api_key": key.reveal(), **params}
        try:
            return self._session.post(url, data=data, timeout=TIMEOUT_S, headers={"Accept-Language": "en"})
        except requests.RequestException as exc:
            # Never the exception text: it may carry the request, and the request carries the key.
            raise ServiceUnavailable(
                f"cannot reach the Transactional Email API ({type(exc).__name__})"
            ) from None

    def _smtp_auth(self, api_user: str, key: ApiKey) -> tuple[Seen, str]:
        host, port = self.endpoints.relay_host, self.endpoints.relay_port
        try:
            with smtplib.SMTP(host, port, timeout=TIMEOUT_S) as smtp:
                smtp.ehlo()
                self._secure(smtp)
                try:
                    smtp.login(api_user, key.reveal())
                except smtplib.SMTPAuthenticationError as exc:
                    return Seen.REFUSED, f"SMTP {exc.smtp_code}"
                return Seen.OK, "SMTP 235"
        except (OSError, smtplib.SMTPException) as exc:
            if isinstance(exc, ServiceError):
                raise
            raise ServiceUnavailable(f"cannot probe the relay {host}:{port} ({type(exc).__name__})") from None

    def _secure(self, smtp: smtplib.SMTP) -> None:
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        elif not self.endpoints.relay_is_loopback:
            raise ServiceError(
                f"the relay {self.endpoints.relay_host} offers no STARTTLS: "
                "refusing to send a key in plain text"
            )

    def _count(self, result: ProbeResult) -> ProbeResult:
        with self._counts_lock:
            self.probes += 1
            self.failed_authentications += result.seen is Seen.REFUSED
        return result

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        relay = f"{self.endpoints.relay_host}:{self.endpoints.relay_port}"
        return f"Transport({self.endpoints.api_url}, relay={relay})"


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ServiceError("the Transactional Email API answered something that is not JSON") from None
    return body if isinstance(body, dict) else {}


def _code(response: requests.Response) -> str:
    errors = _json(response).get("errors") if response.content else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("code", ""))[:60]
    return ""
