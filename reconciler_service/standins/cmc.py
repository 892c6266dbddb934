"""A stand-in for a Customers Mail Cloud account, for tests and the demo; the tool never imports it.

Built from the published pages (cited in docs/cmc.md): the API user guide (the console's fields,
Lock this account shutting out HTTP-API and SMTP), the Transactional Email API's common rules (POST,
`api_user`/`api_key` parameters, JSON answers) and `auditlogs/list` (API group administrators only,
`type` login|operation, a window of at most 31 days, 90 days kept, pages `p`/`r` up to 100).

- `Account`: the API users and the audit logs (what the console would keep).
- `ConsoleDriver`: test-only; performs the console's steps as a person would, each one recorded in
  the operation log under the driver's console account.
- `StandIn`: the Transactional Email endpoints (werkzeug, threads) and the SMTP relay with AUTH
  (aiosmtpd), both on loopback, on free ports.

Answers the published pages do not show (the error bodies, the operation-log record's fields beyond
those of the login-log example) are this stand-in's guesses; docs/cmc.md lists them.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

HOST = "127.0.0.1"
KEPT_DAYS = 90
WINDOW_DAYS = 31
MAX_ROWS = 100


@dataclass(frozen=True)
class ApiUser:
    api_user: str
    api_key: str
    role: str = "normal"  # "admin" (API group Admin) | "normal"
    operation: bool = False
    http_api: bool = True
    smtp: bool = True
    own_data_only: bool = False
    timezone: str = "Asia/Tokyo"
    locked: bool = False

    def __repr__(self) -> str:  # never the key, even in a failing test's output
        return f"ApiUser({self.api_user!r}, role={self.role!r}, locked={self.locked})"


@dataclass
class Account:
    """One account's API users and audit logs, shared by the HTTP app, the relay and the driver."""

    users: dict[str, ApiUser] = field(default_factory=dict)
    operations: list[dict[str, str]] = field(default_factory=list)
    logins: list[dict[str, str]] = field(default_factory=list)
    http_requests: list[tuple[str, str]] = field(default_factory=list)  # (resource/action, api_user)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Any = None  # a callable returning "now" (UTC); tests move it

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    def user(self, api_user: str) -> ApiUser | None:
        with self.lock:
            return self.users.get(api_user.lower())

    def authenticate(self, api_user: str, api_key: str, channel: str) -> ApiUser | None:
        """The user when the key is right, the account unlocked and `channel` allowed; the failed
        attempts go to the login log, as a real service may count (and throttle) them."""
        user = self.user(api_user)
        reason = None
        if user is None or user.api_key != api_key:
            reason = "Password authentication failed"
        elif user.locked:
            reason = "Account locked"
        elif not getattr(user, channel):
            reason = f"{channel} access not allowed"
        self._login(api_user, channel, reason)
        return user if reason is None else None

    def failed_logins(self) -> int:
        with self.lock:
            return sum(1 for entry in self.logins if entry["result"] == "failure")

    def _login(self, api_user: str, channel: str, reason: str | None) -> None:
        entry = {
            "account": api_user,
            "code": "0" if reason is None else "1",
            "created": _stamp(self.now()),
            "ipaddress": HOST,
            "reason": reason or "",
            "result": "success" if reason is None else "failure",
            "channel": channel,
        }
        with self.lock:
            self.logins.append(entry)


class ConsoleDriver:
    """Test-only: does in the account what a person does in the console, and the console records
    each operation under `account` (the console login that made it)."""

    def __init__(self, account: Account, console_account: str = "operator@example.com") -> None:
        self.account = account
        self.console_account = console_account

    def add(self, api_user: str, api_key: str, **attributes: Any) -> None:
        self._put(ApiUser(api_user, api_key, **attributes), "add")

    def change_key(self, api_user: str, api_key: str) -> None:
        self._put(replace(self._get(api_user), api_key=api_key), "change_api_key")

    def edit(self, api_user: str, **attributes: Any) -> None:
        self._put(replace(self._get(api_user), **attributes), "edit")

    def lock(self, api_user: str) -> None:
        self._put(replace(self._get(api_user), locked=True), "lock")

    def unlock(self, api_user: str) -> None:
        self._put(replace(self._get(api_user), locked=False), "unlock")

    def delete(self, api_user: str) -> None:
        with self.account.lock:
            self.account.users.pop(api_user.lower(), None)
        self._record("delete", api_user)

    def _get(self, api_user: str) -> ApiUser:
        user = self.account.user(api_user)
        if user is None:
            raise KeyError(f"no API user {api_user} in the console")
        return user

    def _put(self, user: ApiUser, operation: str) -> None:
        with self.account.lock:
            self.account.users[user.api_user.lower()] = user
        self._record(operation, user.api_user)

    def _record(self, operation: str, target: str) -> None:
        entry = {
            "account": self.console_account,
            "created": _stamp(self.account.now()),
            "ipaddress": HOST,
            "operation": operation,
            "target": target,
        }
        with self.account.lock:
            self.account.operations.append(entry)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, code: str, message: str, field_name: str | None = None) -> Response:
    body = {"errors": [{"code": code, "field": field_name, "message": message}]}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _params(request: Request) -> dict[str, str]:
    if request.mimetype == "application/json":
        data = request.get_json(silent=True)
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {k: v for k, v in request.form.items()}


class TransactionalEmail:
    """The WSGI app: `/transaction/v2/<resource>/<action>.json`, POST only."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["transaction", "v2"] or not parts[3].endswith(".json"):
            return _error(404, "not_found", "no such resource")
        if request.method != "POST":
            return _error(405, "method_not_allowed", "the Transactional Email API accepts POST only")
        params = _params(request)
        resource = f"{parts[2]}/{parts[3].removesuffix('.json')}"
        api_user = params.get("api_user", "")
        with self.account.lock:
            self.account.http_requests.append((resource, api_user))
        user = self.account.authenticate(api_user, params.get("api_key", ""), "http_api")
        if user is None:
            return _error(401, "authentication_failed", "api_user or api_key is wrong", "api_key")
        if resource == "auditlogs/list":
            return self._auditlogs(user, params)
        if resource == "deliveries/list":
            return self._deliveries(params)
        return _error(404, "not_found", f"{resource} is not part of this stand-in")

    def _deliveries(self, params: dict[str, str]) -> Response:
        for required in ("server_composition", "date"):
            if not params.get(required):
                return _error(400, "invalid_parameter", f"{required} is required", required)
        return Response(json.dumps({"deliveries": [], "total": 0}), mimetype="application/json")

    def _auditlogs(self, user: ApiUser, params: dict[str, str]) -> Response:
        if user.role != "admin":
            return _error(403, "permission_denied", "API group administrators only")
        kind = params.get("type")
        if kind not in ("login", "operation"):
            return _error(400, "invalid_parameter", "type must be login or operation", "type")
        window = self._window(params)
        if isinstance(window, Response):
            return window
        start, end = window
        source = self.account.operations if kind == "operation" else self.account.logins
        with self.account.lock:
            rows = [r for r in source if start <= r["created"][:10] <= end]
        rows = [r for r in rows if params.get("account", "") in r["account"]]
        page, size = int(params.get("p", "0")), min(int(params.get("r", "10")), MAX_ROWS)
        key = "operationlogs" if kind == "operation" else "loginlogs"
        shown = [
            {k: v for k, v in r.items() if k != "channel"} for r in rows[page * size : (page + 1) * size]
        ]
        return Response(json.dumps({key: shown, "total": len(rows)}), mimetype="application/json")

    def _window(self, params: dict[str, str]) -> tuple[str, str] | Response:
        today = self.account.now().date()
        try:
            start = date.fromisoformat(params.get("start_date", today.isoformat()))
            end = date.fromisoformat(params.get("end_date", today.isoformat()))
        except ValueError:
            return _error(400, "invalid_parameter", "dates are yyyy-mm-dd", "start_date")
        if start > end or (end - start).days + 1 > WINDOW_DAYS:
            return _error(400, "invalid_parameter", "the period is at most 31 days", "start_date")
        if start < today - timedelta(days=KEPT_DAYS):
            return _error(400, "invalid_parameter", "logs are kept 90 days", "start_date")
        return start.isoformat(), end.isoformat()


class Relay:
    """aiosmtpd authenticator: SMTP AUTH as api_user/api_key, SMTP checked, account unlocked."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.messages: list[tuple[str, str]] = []  # (api_user, envelope sender)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        user = self.account.authenticate(login, auth_data.password.decode(errors="replace"), "smtp")
        return (
            AuthResult(success=False, handled=False)
            if user is None
            else AuthResult(success=True, auth_data=login)
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((str(session.auth_data), envelope.mail_from))
        return "250 2.0.0 Message accepted"


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port to start, so it cannot be given port 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class StandIn:
    """Both endpoints of one `Account`, started on loopback; `env()` points the tool at them."""

    def __init__(self, account: Account | None = None) -> None:
        self.account = account or Account()
        self.relay = Relay(self.account)
        self.driver = ConsoleDriver(self.account)
        self._http: BaseWSGIServer | None = None
        self._smtp: Controller | None = None

    def start(self) -> StandIn:
        # One line per request and aiosmtpd's deprecation notes would bury what a demo shows.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._http = make_server(HOST, 0, TransactionalEmail(self.account), threaded=True)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        # AUTH without TLS is the point on loopback; the tool itself refuses it anywhere else.
        warnings.filterwarnings(
            "ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning
        )
        self._smtp = Controller(
            self.relay,
            hostname=HOST,
            port=free_port(),
            authenticator=self.relay,
            auth_required=True,
            auth_require_tls=False,
        )
        self._smtp.start()
        return self

    @property
    def api_url(self) -> str:
        assert self._http is not None
        return f"http://{HOST}:{self._http.server_port}/transaction/v2"

    @property
    def smtp_port(self) -> int:
        assert self._smtp is not None
        return int(self._smtp.port)

    def env(self, admin_user: str, admin_key_env: str = "CMC_ADMIN_KEY") -> dict[str, str]:
        """RECONCILER_* settings for this stand-in (the admin's key is the caller's to set)."""
        return {
            "RECONCILER_BACKEND": "cmc-console",
            "RECONCILER_CMC_API_URL": self.api_url,
            "RECONCILER_CMC_RELAY_HOST": HOST,
            "RECONCILER_CMC_RELAY_PORT": str(self.smtp_port),
            "RECONCILER_CMC_SERVER_COMPOSITION": "standin",
            "RECONCILER_API_USER": admin_user,
        }

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
