"""`ServiceClient`: the only code that speaks HTTP to the service (the contract: openapi.json).

What it does against production networks:
- one `requests.Session` whose connection pool is as large as the engine's concurrency, so it can
  be shared by a thread pool;
- connect and read timeouts on every call;
- retries bounded by a deadline per change, not a count (retry.py): idempotent calls on network
  errors and 429/502/503/504; a POST only on 429/503, which the service sends before doing
  anything, and on errors that prove it was never sent; the backoff honours Retry-After;
- a create whose response was lost is settled by reading the user back (a read retried like any
  other), then sent again only if it did not land, never blindly; so is a conditional update
  (If-Match) whose retry finds the version its own first attempt made;
- writes carry the run's lease token and X-Reconciler-* headers; once the lease is lost (a write
  answered `lease_lost`, or the renewal failed) no further write is sent;
- a lost answer to the PATCH that changes the reconciler's own key is settled with the new key;
- TLS verification on; plain http only to loopback unless explicitly allowed;
- errors are the project's own classes, with truncated bodies and never a credential.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from reconciler.backend.http import probe
from reconciler.backend.http.retry import Deadlines, RetryPolicy, retry_after, sleep_within
from reconciler.config import Settings, is_loopback_host, service_api_key
from reconciler.errors import (
    AuthError,
    ChangedSincePlan,
    ConfigError,
    Conflict,
    LeaseLost,
    LockHeld,
    NotFound,
    ServiceError,
    ServiceUnavailable,
)
from reconciler.model import Lease, LiveUser, Operation, UserAttributes
from reconciler.secrets import ApiKey

log = logging.getLogger("reconciler.backend.http.client")

PAGE_ROWS = 100  # the contract's maximum
MAX_DETAIL = 300  # characters of a response body quoted in an error message
RETRY_STATUSES = frozenset({429, 502, 503, 504})
POST_RETRY_STATUSES = frozenset({429, 503})  # answered before the service did anything
AMBIGUOUS_STATUSES = frozenset({502, 504})  # a gateway gave up: the request may have been applied


@dataclass(frozen=True)
class _Sent:
    """A request's final answer; `after_lost`: an earlier attempt's answer was lost, so the first
    attempt may be what this answer sees (a 404 after a DELETE, a 412 after a PATCH)."""

    response: requests.Response
    after_lost: bool
    retries: int


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    api_users: list[LiveUser]
    total: int


class _Operations(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    operations: list[Operation]


class _Ambiguous(Exception):
    """A write whose outcome is unknown: sent, but the answer was lost."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceClient:
    """Thread-safe client of the API-users service. Use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_user: str,
        api_key: SecretStr,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int | None = None,
        concurrency: int = 8,
        ca_bundle: str | None = None,
        allow_insecure_http: bool = False,
        backoff_factor: float = 0.1,
        change_deadline: float = 60.0,
    ) -> None:
        self.base_url = _checked_url(base_url, allow_insecure_http)
        self.api_user = api_user
        self._key = api_key
        self.timeout = (connect_timeout, read_timeout)
        self.concurrency = concurrency
        self._answered = False  # the first answer of a wrong base URL is a 404: say so
        self.policy = RetryPolicy(change_deadline, retries, backoff_factor)
        self._deadlines = Deadlines(change_deadline)
        self.session = _session(api_user, api_key, concurrency=concurrency, ca_bundle=ca_bundle)
        self._lease_lost = threading.Event()
        self._lease_lost_reason = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceClient:
        api_key = service_api_key(settings)  # RECONCILER_API_KEY, else api_key_ref of reconciler.yaml
        if not settings.api_user or api_key is None:
            raise ConfigError(
                "the service credentials are not set: set RECONCILER_API_USER and RECONCILER_API_KEY "
                "(or api_key_ref in reconciler.yaml)"
            )
        return cls(
            settings.api_url,
            settings.api_user,
            api_key,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries=settings.retries,
            change_deadline=settings.change_deadline,
            concurrency=settings.concurrency,
            ca_bundle=settings.ca_bundle,
            allow_insecure_http=settings.allow_insecure_http,
        )

    # Reading

    def list_users(self) -> list[LiveUser]:
        """Every live user, ordered by api_user (case-insensitive). Page 0 tells the total; the
        other pages are then fetched concurrently (on loopback the service, not the network, is
        the bottleneck, and it serves requests in parallel threads)."""
        started = time.perf_counter()
        first = self._page(0)
        pages = -(-first.total // PAGE_ROWS)
        rest: list[_Page] = []
        if pages > 1:
            with ThreadPoolExecutor(min(self.concurrency, pages - 1), thread_name_prefix="list") as pool:
                rest = list(pool.map(self._page, range(1, pages)))
        users = _merge_pages([first, *rest])
        log.info("listed %d API users (%d page(s)) in %.0f ms", len(users), max(pages, 1), _ms(started))
        return users

    def get_user(self, api_user: str) -> LiveUser | None:
        try:
            return _live(self._call("GET", _user_path(api_user)))
        except NotFound:
            return None

    def relay_messages(self) -> list[dict[str, Any]]:
        body = _json(self._call("GET", "/relay/messages"))
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            raise ServiceError("GET /relay/messages: unexpected response shape")
        return messages

    def list_gateways(self) -> list[dict[str, Any]]:
        """Every mail gateway's last report (docs/contract.md, "Gateway reports"), with `reported_at`."""
        body = _json(self._call("GET", "/gateways"))
        gateways = body.get("gateways") if isinstance(body, dict) else None
        if not isinstance(gateways, list) or not all(isinstance(g, dict) for g in gateways):
            raise ServiceError("GET /gateways: unexpected response shape")
        return gateways

    # Writing

    def report_gateway(self, name: str, report: dict[str, Any]) -> None:
        """PUT /gateways/{name}: what this gateway serves after a render. Idempotent, so retried."""
        self._call("PUT", "/gateways/" + quote(name, safe=""), json=report)

    def create_user(
        self, api_user: str, attributes: dict[str, Any], api_key: ApiKey, annotations: dict[str, str]
    ) -> LiveUser:
        body = {**attributes, "api_user": api_user, "api_key": api_key.reveal(), "annotations": annotations}
        with self._deadlines.change():
            try:
                return _live(self._write("POST", "/api_users", json=body, ambiguous_raises=True).response)
            except _Ambiguous as lost:
                log.warning("POST /api_users for %s: %s; settling by reading it back", api_user, lost.reason)
            except Conflict:
                # The seam's contract: a create that finds the user it intended (sent again after
                # an answer lost in an earlier run) is done; anything else stays a conflict. The
                # key cannot be read back: only a recorded fingerprint (an annotation) proves it.
                if not annotations:
                    raise
                log.info("POST /api_users for %s: it exists; comparing it with what was sent", api_user)
            return self._settle_create(api_user, attributes, annotations, body)

    def update_user(
        self,
        api_user: str,
        changes: dict[str, Any],
        api_key: ApiKey | None = None,
        annotations: dict[str, str | None] | None = None,
        if_match: str | None = None,
    ) -> LiveUser:
        """PATCH; with `if_match` (the version the plan saw) only if the user has not changed since:
        otherwise ChangedSincePlan, never a retry."""
        # PATCH is idempotent here (same body, same result), so urllib3 may retry it.
        body: dict[str, Any] = dict(changes)
        if api_key is not None:
            body["api_key"] = api_key.reveal()
        if annotations:
            body["annotations"] = annotations
        path = _user_path(api_user)
        with self._deadlines.change():
            try:
                sent = self._write("PATCH", path, json=body, headers=_if_match(if_match), tolerate=412)
            except AuthError as exc:
                if api_key is None or api_user.lower() != self.api_user.lower() or exc.status != 401:
                    raise
                return self._settle_own_key(api_user, changes, annotations, api_key, exc)
            if sent.response.status_code == 412:
                return self._settle_conditional(api_user, changes, annotations, sent)
            return _live(sent.response)

    def delete_user(self, api_user: str, if_match: str | None = None) -> None:
        path = _user_path(api_user)
        with self._deadlines.change():
            sent = self._write("DELETE", path, headers=_if_match(if_match), tolerate=(404, 412))
        if sent.response.status_code == 412:
            raise self._error("DELETE", path, sent.response)
        # A retried DELETE whose first answer was lost finds the user already gone: that is done.
        if sent.response.status_code == 404 and not sent.after_lost:
            raise self._error("DELETE", path, sent.response)

    # Shared state (contract 2.1): run headers, leases, the operation log

    def set_run_headers(self, actor: str, commit: str | None, run: str) -> None:
        """Sent with every request, so the service's log says which run of whom from which commit."""
        headers = {"X-Reconciler-Actor": actor, "X-Reconciler-Run": run}
        if commit:
            headers["X-Reconciler-Commit"] = commit
        self.session.headers.update({k: _header_safe(v) for k, v in headers.items()})

    def acquire_lease(self, name: str, request: dict[str, Any]) -> Lease:
        """201 -> our lease (with token); 409 -> LockHeld naming the holder. Whether the service has
        leases at all is the backend's capabilities (backend.py), asked before this is called."""
        path = _lease_path(name)
        response = self._call("PUT", path, json=request, tolerate=409)
        if response.status_code == 409:
            held = _lease(response)
            raise LockHeld(f"another run holds the service lease '{name}': {held.describe()}", held)
        return _lease(response)

    def renew_lease(self, name: str, token: str, request: dict[str, Any]) -> Lease:
        path = _lease_path(name)
        response = self._call("PUT", path, json=request, headers=_if_match(token), tolerate=(409, 412))
        if response.status_code == 409:
            held = _lease(response).describe()
            raise LeaseLost(f"the lease '{name}' is now held by {held}", 409, "lease_lost")
        if response.status_code == 412:
            raise LeaseLost(f"the lease '{name}' expired or was broken", 412, "lease_lost")
        return _lease(response)

    def release_lease(self, name: str, token: str) -> None:
        self._call("DELETE", _lease_path(name), headers=_if_match(token))

    def get_lease(self, name: str) -> Lease | None:
        response = self._call("GET", _lease_path(name), tolerate=404)
        return None if response.status_code == 404 else _lease(response)

    def force_release_lease(self, name: str) -> bool:
        """Break whatever lease `name` has (the service logs it); False when there was none."""
        response = self._call("DELETE", _lease_path(name), params={"force": "true"}, tolerate=404)
        return response.status_code != 404

    def use_lease(self, token: str) -> None:
        """Fence every later write with this lease: the service refuses it once the lease is gone."""
        self.session.headers["X-Lease-Token"] = token

    def lose_lease(self, reason: str) -> None:
        """No write starts after this (the renewal failed, or a write was answered lease_lost)."""
        if not self._lease_lost.is_set():
            self._lease_lost_reason = reason
            self._lease_lost.set()

    @property
    def lease_lost(self) -> str | None:
        return self._lease_lost_reason if self._lease_lost.is_set() else None

    def operations(
        self, since: datetime | None = None, api_user: str | None = None, limit: int = 100
    ) -> list[Operation] | None:
        """The service's operation log, newest first; None when the service keeps none (404)."""
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        if api_user is not None:
            params["api_user"] = api_user
        response = self._call("GET", "/operations", params=params, tolerate=404)
        if response.status_code == 404:
            return None
        try:
            return _Operations.model_validate_json(response.content).operations
        except ValidationError:
            raise ServiceError("GET /operations: unexpected response shape") from None

    def settle_rotated_key(self, declared: ApiKey) -> bool:
        """True (and the client now uses `declared`) when the configured key is refused but the
        key declared for the reconciler's own user is accepted: an earlier run rotated it and lost
        the answer. False when the configured key works; AuthError when neither does."""
        try:
            self._call("GET", _user_path(self.api_user))
            return False
        except AuthError as exc:
            if exc.status != 401 or not self._accepts(declared):
                raise
        self.use_api_key(declared)
        return True

    # Lifecycle

    def use_api_key(self, api_key: ApiKey) -> None:
        """Authenticate with a new key from now on: after apply has changed the reconciler's own key,
        the old one no longer works for the rest of the run."""
        self._key = SecretStr(api_key.reveal())
        self.session.auth = (self.api_user, api_key.reveal())

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServiceClient({self.base_url!r}, api_user={self.api_user!r})"

    # Internals

    def _page(self, page: int) -> _Page:
        response = self._call("GET", "/api_users", params={"p": page, "r": PAGE_ROWS})
        try:
            return _Page.model_validate_json(response.content)
        except ValidationError:
            raise ServiceError(f"GET /api_users page {page}: unexpected response shape") from None

    def _settle_create(
        self, api_user: str, attributes: dict[str, Any], annotations: dict[str, str], body: dict[str, Any]
    ) -> LiveUser:
        while True:
            found = self.get_user(api_user)  # retried like any read, within the change's deadline
            if found is not None:
                break
            # It did not happen, so sending it again cannot create it twice; a late landing of the
            # first attempt answers 409, and a lost answer again is settled the same way.
            try:
                return _live(self._write("POST", "/api_users", json=body, ambiguous_raises=True).response)
            except (_Ambiguous, Conflict) as again:
                if isinstance(again, Conflict) and again.code == "lease_lost":
                    raise
                if self._deadlines.expired():
                    raise ServiceUnavailable(
                        f"POST /api_users: {api_user} not settled within {self.policy.deadline:g} s "
                        "(RECONCILER_CHANGE_DEADLINE)"
                    ) from None
        if _matches(found, attributes, annotations):
            return found
        raise Conflict(
            f"POST /api_users: {api_user} already exists and differs from what was sent (someone "
            "else made it, or changed it after an answer was lost); run the plan again",
            status=409,
            code="ambiguous_create",
        )

    def _write(self, method: str, path: str, **kwargs: Any) -> _Sent:
        """A write to a user: not sent once the lease is lost; a `lease_lost` answer loses it."""
        if self.lease_lost is not None:
            raise LeaseLost(f"{method} {path}: not sent: {self.lease_lost}", code="lease_lost")
        try:
            return self._send(method, path, **kwargs)
        except Conflict as exc:
            if exc.code != "lease_lost":
                raise
            self.lose_lease("the service answered lease_lost: the lease expired or was broken")
            raise LeaseLost(str(exc), exc.status, exc.code) from None

    def _settle_conditional(
        self,
        api_user: str,
        changes: dict[str, Any],
        annotations: dict[str, str | None] | None,
        sent: _Sent,
    ) -> LiveUser:
        """A 412 is final, unless it answers our own retry after a lost answer: then the first
        attempt may be what moved the version, which reading the user back tells."""
        if sent.after_lost:
            found = self.get_user(api_user)
            if found is not None and _patch_landed(found, changes, annotations):
                return found
        raise self._error("PATCH", _user_path(api_user), sent.response)

    def _settle_own_key(
        self,
        api_user: str,
        changes: dict[str, Any],
        annotations: dict[str, str | None] | None,
        api_key: ApiKey,
        refused: AuthError,
    ) -> LiveUser:
        """The PATCH that changes our own key came back 401: its first attempt landed and the retry
        went out with the old key. If the new key is accepted, switch to it and read back."""
        if not self._accepts(api_key):
            raise refused
        log.warning("the answer to the change of the reconciler's own key was lost; the new key works")
        self.use_api_key(api_key)
        found = self.get_user(api_user)
        if found is None or not _patch_landed(found, changes, annotations):
            raise refused
        return found

    def _accepts(self, api_key: ApiKey) -> bool:
        """Whether the service accepts `api_key` for our user (one GET; the session keeps its key)."""
        try:
            response = self.session.get(
                self.base_url + _user_path(self.api_user),
                auth=(self.api_user, api_key.reveal()),
                timeout=self.timeout,
            )
        except requests.RequestException:
            return False
        return response.status_code == 200

    def _call(
        self,
        method: str,
        path: str,
        *,
        ambiguous_raises: bool = False,
        tolerate: int | tuple[int, ...] = 0,
        **kwargs: Any,
    ) -> requests.Response:
        sent = self._send(method, path, ambiguous_raises=ambiguous_raises, tolerate=tolerate, **kwargs)
        return sent.response

    def _send(
        self,
        method: str,
        path: str,
        *,
        ambiguous_raises: bool = False,
        tolerate: int | tuple[int, ...] = 0,
        **kwargs: Any,
    ) -> _Sent:
        """One request, retried within the deadline of the change (retry.py). `ambiguous_raises`:
        a POST that may have been applied without its answer raises _Ambiguous, to be settled."""
        if not self._answered:
            probe.refuse_if_nothing_listens(self.base_url, self.api_user)
        started = time.perf_counter()
        retries, lost = 0, False
        with self._deadlines.change():
            while True:
                try:
                    response = self._request(method, path, kwargs)
                except requests.RequestException as exc:
                    log.debug("%s %s -> %s after %.1f ms", method, path, _cause_name(exc), _ms(started))
                    sent = not _never_sent(exc)
                    if sent and method == "POST" and ambiguous_raises:
                        raise _Ambiguous(type(exc).__name__) from None
                    final = isinstance(exc, requests.exceptions.SSLError) or (sent and method == "POST")
                    if final or not self._pause(retries, None):
                        raise self._unreachable(method, path, exc) from None
                    lost = lost or sent
                else:
                    status = response.status_code
                    if ambiguous_raises and status in AMBIGUOUS_STATUSES:
                        raise _Ambiguous(f"HTTP {status}")
                    wait = retry_after(response.headers.get("Retry-After"))
                    if not _retryable(method, status) or not self._pause(retries, wait):
                        break
                    lost = lost or status in AMBIGUOUS_STATUSES
                    response.close()
                retries += 1
        first, self._answered = not self._answered, True
        _log_request(method, path, kwargs.get("params"), response, started, retries=retries)
        tolerated = tolerate if isinstance(tolerate, tuple) else (tolerate,)
        if response.status_code >= 400 and response.status_code not in tolerated:
            raise self._error(method, path, response, first=first)
        return _Sent(response, lost, retries)

    def _request(self, method: str, path: str, kwargs: dict[str, Any]) -> requests.Response:
        try:
            return self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except ValueError as exc:  # UnicodeError is one: e.g. a credential HTTP Basic cannot encode
            # Raised while preparing the request, so nothing was sent. The text of the exception
            # may quote the credential: only its class is named.
            raise ServiceError(
                f"{method} {path}: the request cannot be sent ({type(exc).__name__}); check that "
                "RECONCILER_API_USER and RECONCILER_API_KEY are plain ASCII"
            ) from None

    def _pause(self, retries: int, wait: float | None) -> bool:
        """Sleep before the next retry; False when the deadline (or RECONCILER_RETRIES) is spent."""
        return self.policy.allows(retries) and sleep_within(self._deadlines, self.policy.delay(retries, wait))

    def _unreachable(self, method: str, path: str, exc: requests.RequestException) -> ServiceError:
        # The exception text may carry URLs and internals; its class and cause name are enough.
        cause = _cause_name(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return ServiceError(f"{method} {path}: TLS verification failed ({cause})")
        return ServiceUnavailable(f"{method} {path}: cannot reach the service at {self.base_url} ({cause})")

    def _error(
        self, method: str, path: str, response: requests.Response, *, first: bool = False
    ) -> ServiceError:
        status = response.status_code
        code, detail = _error_detail(response)
        message = self._redact(f"{method} {path}: HTTP {status}: {detail}")
        if status == 401:
            message += (
                f"; the service did not accept the credentials of {self.api_user}: check "
                "RECONCILER_API_USER and RECONCILER_API_KEY (a locked user, or one without HTTP-API "
                "access, is refused too)"
            )
        if status == 404 and (first or path == "/api_users"):
            # The collection always exists: a 404 there (or on the very first call) means the URL
            # points next to the API, usually a RECONCILER_API_URL without its base path.
            message += (
                f"; no such path at {self.base_url}: does RECONCILER_API_URL end in /api/v2 "
                "(e.g. https://host/api/v2)?"
            )
        cls = _ERROR_CLASSES.get(
            status, ServiceUnavailable if status >= 500 or status == 429 else ServiceError
        )
        return cls(message, status=status, code=code)

    def _redact(self, text: str) -> str:
        key = self._key.get_secret_value()
        return text.replace(key, "**********") if key else text


_ERROR_CLASSES: dict[int, type[ServiceError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    412: ChangedSincePlan,
}


def _session(
    api_user: str, api_key: SecretStr, *, concurrency: int, ca_bundle: str | None
) -> requests.Session:
    # No retries inside urllib3: ServiceClient._send retries within the change's deadline.
    # The engine applies changes from a thread pool of `concurrency` workers.
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(concurrency, 1), max_retries=0)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.auth = (api_user, api_key.get_secret_value())
    session.verify = ca_bundle or True
    session.trust_env = False  # no proxy or .netrc surprises: the settings say where the service is
    session.headers.update({"Accept": "application/json", "User-Agent": "reconciler"})
    return session


def _retryable(method: str, status: int) -> bool:
    """A POST only when the service answered before doing anything (429/503); the others on any
    status a retry may cure."""
    return status in (POST_RETRY_STATUSES if method == "POST" else RETRY_STATUSES)


def _checked_url(url: str, allow_insecure_http: bool) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError("RECONCILER_API_URL must not contain credentials; use RECONCILER_API_USER/KEY")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("RECONCILER_API_URL must be an http(s) URL such as https://host/api/v2")
    if parts.scheme == "http" and not (is_loopback_host(parts.hostname) or allow_insecure_http):
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: use https, or set RECONCILER_ALLOW_INSECURE_HTTP=true"
        )
    return url.rstrip("/")


def _user_path(api_user: str) -> str:
    return "/api_users/" + quote(api_user, safe="@+")


def _lease_path(name: str) -> str:
    return "/leases/" + quote(name, safe="")


def _if_match(value: str | None) -> dict[str, str]:
    return {"If-Match": f'"{value}"'} if value else {}


def _header_safe(value: str) -> str:
    # HTTP headers carry latin-1 at most; a non-ASCII actor name must not make every write fail.
    return "".join(ch if " " <= ch <= "~" else "?" for ch in value)[:200]


def _patch_landed(user: LiveUser, changes: dict[str, Any], annotations: dict[str, str | None] | None) -> bool:
    """Whether `user` shows everything a PATCH set: its fields and annotations (a null removes one)."""
    notes = annotations or {}
    return _contains(user.model_dump(mode="json"), changes) and all(
        user.annotations.get(name) == value for name, value in notes.items()
    )


def _contains(live: dict[str, Any], patch: dict[str, Any]) -> bool:
    for name, value in patch.items():
        if isinstance(value, dict):
            inner = live.get(name)
            if not isinstance(inner, dict) or not _contains(inner, value):
                return False
        elif live.get(name) != value:
            return False
    return True


def _lease(response: requests.Response) -> Lease:
    try:
        return Lease.model_validate_json(response.content)
    except ValidationError:
        raise ServiceError(f"HTTP {response.status_code}: the answer is not a lease") from None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ServiceError(f"the service answered HTTP {response.status_code} without JSON") from None


def _live(response: requests.Response) -> LiveUser:
    try:
        return LiveUser.model_validate_json(response.content)
    except ValidationError:
        raise ServiceError(f"HTTP {response.status_code}: the answer is not a user object") from None


def _merge_pages(pages: list[_Page]) -> list[LiveUser]:
    # Users created or deleted during the listing shift page boundaries; never report one twice.
    seen: dict[str, LiveUser] = {}
    for page in pages:
        for user in page.api_users:
            seen.setdefault(user.api_user.lower(), user)
    return [seen[name] for name in sorted(seen)]


def _matches(user: LiveUser, attributes: dict[str, Any], annotations: dict[str, str]) -> bool:
    if any(user.annotations.get(k) != v for k, v in annotations.items()):
        return False
    try:
        wanted = UserAttributes.model_validate(attributes).model_dump(mode="json")
    except ValidationError:
        return False
    live = user.model_dump(mode="json")
    return all(live.get(name) == value for name, value in wanted.items() if name in attributes)


def _error_detail(response: requests.Response) -> tuple[str | None, str]:
    """The error's code and a short, safe description (the service never echoes input values)."""
    try:
        errors = response.json()["errors"]
        code = str(errors[0].get("code"))
        text = "; ".join(
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        code, text = None, response.text
    text = " ".join(text.split())
    return code, text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "... (truncated)"


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the service (the connection was never made)."""
    return any(isinstance(e, (NewConnectionError, ConnectTimeoutError)) for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    # requests wraps urllib3's MaxRetryError, whose `reason` is the real cause.
    chain = [exc]
    while len(chain) < 10:
        last = chain[-1]
        reason = getattr(last, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else (last.__cause__ or last.__context__)
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def _cause_name(exc: BaseException) -> str:
    """The most telling class in the chain: urllib3's own error (ReadTimeoutError,
    NewConnectionError, ProtocolError...) rather than requests' wrapper or a bare OSError."""
    chain = _chain(exc)
    for error in chain:
        if type(error).__module__.startswith("urllib3") and type(error).__name__ != "MaxRetryError":
            return type(error).__name__
    return type(chain[-1]).__name__


def _log_request(
    method: str, path: str, params: Any, response: requests.Response, started: float, *, retries: int
) -> None:
    """One debug line per request: method, path (with its paging query), status, time and how many
    times urllib3 retried it. Never a header or a body: they carry the credentials and keys."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
    log.debug(
        "%s %s%s -> %d in %.1f ms (retries: %d)",
        method,
        path,
        query,
        response.status_code,
        _ms(started),
        retries,
    )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
