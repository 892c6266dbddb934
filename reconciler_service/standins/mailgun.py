"""A stand-in of Mailgun's Credentials API and SMTP relay, on loopback, for tests and demos.

Built from Mailgun's published API reference (docs/mailgun.md lists the pages and which behaviour
here is inferred rather than documented):

- `GET /v3/domains/{domain}/credentials?skip=&limit=` -> `{"items": [...], "total_count": N}`, each
  item `login`, `mailbox`, `created_at` (RFC 2822), `size_bytes`;
- `POST /v3/domains/{domain}/credentials` (form `login`, `password`);
- `PUT /v3/domains/{domain}/credentials/{login}` (form `password`);
- `DELETE /v3/domains/{domain}/credentials/{login}`;
- HTTP Basic `api:<key>`; errors `{"message": ...}`; 404 for an unknown domain or login; a PUT of
  the password the credential already has is refused; passwords are 5-32 characters;
- `fail_next()` answers the next requests 429 (or 5xx) with `Retry-After`;
- an SMTP side (AUTH PLAIN/LOGIN, STARTTLS when given a certificate) that records which login
  authenticated for each message.

Self-contained on purpose: werkzeug, aiosmtpd and the standard library only, so this file moves
with the service's distribution. The tool never imports it.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import secrets
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

HOST = "127.0.0.1"
MIN_PASSWORD, MAX_PASSWORD = 5, 32  # Mailgun's help centre: "between 5 and 32 characters"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000  # the reference's default; the maximum is inferred
SAME_PASSWORD = "New password cannot be the same as old password"  # noqa: S105 (an error message)

_URLS = Map(
    [
        Rule("/v3/domains/<domain>/credentials", methods=["GET"], endpoint="list"),
        Rule("/v3/domains/<domain>/credentials", methods=["POST"], endpoint="create"),
        Rule("/v3/domains/<domain>/credentials/<login>", methods=["PUT"], endpoint="update"),
        Rule("/v3/domains/<domain>/credentials/<login>", methods=["DELETE"], endpoint="delete"),
    ]
)


@dataclass
class _Credential:
    login: str
    password: str = field(repr=False)
    created_at: datetime


@dataclass(frozen=True)
class Relayed:
    """One message the SMTP side accepted, with the login that authenticated for it."""

    login: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str | None


class MailgunStandIn:
    """Start with `start()`, stop with `stop()` (or use as a context manager). `url` is the base URL
    to give the reconciler (RECONCILER_MAILGUN_API_URL); `smtp_port` the relay's port."""

    def __init__(
        self, api_key: str, domains: list[str], *, tls_files: tuple[Path, Path] | None = None
    ) -> None:
        self._api_key = api_key
        self._lock = threading.Lock()
        self._domains: dict[str, dict[str, _Credential]] = {d.lower(): {} for d in domains}
        self._failures: list[tuple[int, str | None]] = []
        self._lose_answers: set[str] = set()  # logins whose next write is applied, its answer lost
        self._tls_files = tls_files
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request answered
        self.messages: list[Relayed] = []
        self._http: BaseWSGIServer | None = None
        self._smtp: Controller | None = None
        self.smtp_port = 0

    # --- life cycle -------------------------------------------------------------------------------

    def start(self, smtp_port: int | None = None) -> MailgunStandIn:
        self._http = make_server(HOST, 0, self._wsgi, threaded=True)
        server = self._http
        threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="mailgun-standin", daemon=True
        ).start()
        if smtp_port is not None:
            self._smtp = _start_smtp(self, smtp_port, self._tls_files)
            self.smtp_port = smtp_port
        return self

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> MailgunStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._http is not None, "start() first"
        return f"http://{HOST}:{self._http.server_port}"

    # --- test controls ----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 429, retry_after: str | None = "1") -> None:
        """Answer the next `count` requests with `status` and this Retry-After (seconds; None: no
        header), before doing anything."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def lose_next_answer(self, login: str) -> None:
        """Apply the next write to `login`, then cut the connection instead of answering."""
        with self._lock:
            self._lose_answers.add(login.lower())

    def clear(self) -> None:
        """Forget every credential, request and message: an empty account again."""
        with self._lock:
            for creds in self._domains.values():
                creds.clear()
            self.requests.clear()
            self.messages.clear()

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if m == method)

    def set_password(self, domain: str, login: str, password: str) -> None:
        """A change made behind the reconciler's back (the control panel)."""
        with self._lock:
            self._domains[domain.lower()][login.lower()].password = password

    def logins(self) -> list[str]:
        with self._lock:
            return sorted(c.login for creds in self._domains.values() for c in creds.values())

    def authenticate(self, login: str, password: str) -> str | None:
        domain = login.rpartition("@")[2].lower()
        with self._lock:
            found = self._domains.get(domain, {}).get(login.lower())
            ok = found is not None and hmac.compare_digest(found.password.encode(), password.encode())
            return found.login if ok and found else None

    def record(self, message: Relayed) -> None:
        with self._lock:
            self.messages.append(message)

    # --- HTTP -------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request)
        with self._lock:
            self.requests.append((request.method, request.path))
            lost = request.method != "GET" and self._take_lost(request)
        if lost:
            _cut(environ)
            return []
        return response(environ, start_response)

    def _take_lost(self, request: Request) -> bool:
        login = (request.form.get("login") or request.path.rpartition("/")[2]).lower()
        if login in self._lose_answers:
            self._lose_answers.discard(login)
            return True
        return False

    def _respond(self, request: Request) -> Response:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return _message(status, "Too many requests" if status == 429 else "Service unavailable", headers)
        if not self._authorized(request):
            return _message(401, "Forbidden")
        try:
            endpoint, args = _URLS.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            return _message(exc.code or 404, "Not found")
        with self._lock:
            creds = self._domains.get(str(args["domain"]).lower())
            if creds is None:
                return _message(404, "Domain not found")
            handler = getattr(self, f"_{endpoint}")
            response: Response = handler(request, str(args["domain"]).lower(), creds, args.get("login"))
            return response

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == "api" and hmac.compare_digest(key.encode(), self._api_key.encode())

    def _list(self, request: Request, domain: str, creds: dict[str, _Credential], _: None) -> Response:
        try:
            skip = int(request.args.get("skip", 0))
            limit = int(request.args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _message(400, "skip and limit must be integers")
        if skip < 0 or not 1 <= limit <= MAX_LIMIT:
            return _message(400, f"limit must be between 1 and {MAX_LIMIT}")
        ordered = sorted(creds.values(), key=lambda c: c.created_at)
        items = [_item(c) for c in ordered[skip : skip + limit]]
        return _json(200, {"items": items, "total_count": len(creds)})

    def _create(self, request: Request, domain: str, creds: dict[str, _Credential], _: None) -> Response:
        login = request.form.get("login") or request.form.get("mailbox") or ""
        if "@" not in login:
            login = f"{login}@{domain}"
        if not login.split("@")[0] or login.rpartition("@")[2].lower() != domain:
            return _message(400, f"login must be an address at {domain}")
        if login.lower() in creds:
            return _message(400, f"Credentials {login} already exist")  # inferred wording and status
        password = request.form.get("password")
        generated = password is None
        password = password if password is not None else secrets.token_urlsafe(18)[:MAX_PASSWORD]
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            return _message(400, f"Password length must be between {MIN_PASSWORD} and {MAX_PASSWORD}")
        creds[login.lower()] = _Credential(login, password, datetime.now(UTC))
        body: dict[str, Any] = {"message": "Created 1 credentials pair(s)"}
        if generated:
            body.update(note="Store the password securely", credentials={login: password})
        return _json(200, body)

    def _update(self, request: Request, domain: str, creds: dict[str, _Credential], login: str) -> Response:
        found = creds.get(login.lower())
        if found is None:
            return _message(404, "Credentials not found")
        password = request.form.get("password", "")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            return _message(400, f"Password length must be between {MIN_PASSWORD} and {MAX_PASSWORD}")
        if hmac.compare_digest(found.password.encode(), password.encode()):
            return _message(400, SAME_PASSWORD)
        found.password = password
        return _json(200, {"message": "Password changed"})

    def _delete(self, request: Request, domain: str, creds: dict[str, _Credential], login: str) -> Response:
        found = creds.pop(login.lower(), None)
        if found is None:
            return _message(404, "Credentials not found")
        return _json(200, {"message": "Credentials have been deleted", "spec": found.login})


def _cut(environ: dict[str, Any]) -> None:
    """Close the client's connection without an answer: the write happened, the answer is lost."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _item(cred: _Credential) -> dict[str, Any]:
    return {
        "login": cred.login,
        "mailbox": cred.login,
        "created_at": format_datetime(cred.created_at),  # RFC 2822, numeric offset
        "size_bytes": None,
    }


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def _message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"message": text}, headers)


# --- SMTP ------------------------------------------------------------------------------------------


class _RelayHandler:
    """aiosmtpd authenticator and handler: AUTH against the stand-in's credentials; each message is
    recorded with the login that authenticated, never delivered."""

    def __init__(self, standin: MailgunStandIn) -> None:
        self.standin = standin

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
        if not isinstance(auth, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = self.standin.authenticate(auth.login.decode(errors="replace"), auth.password.decode())
        return AuthResult(success=login is not None, auth_data=login, handled=login is not None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data if isinstance(session.auth_data, str) else None
        if login is None:
            return "530 5.7.0 Authentication required"
        headers = BytesHeaderParser(policy=default_policy).parsebytes(envelope.original_content or b"")
        subject = headers.get("Subject")
        relayed = Relayed(login, envelope.mail_from, tuple(envelope.rcpt_tos), subject and str(subject))
        self.standin.record(relayed)
        return "250 2.0.0 Queued. Thank you."


def _start_smtp(standin: MailgunStandIn, port: int, tls_files: tuple[Path, Path] | None) -> Controller:
    handler = _RelayHandler(standin)
    context = None
    if tls_files is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    else:
        # Without a certificate the relay runs plain on loopback, where that is the point.
        warnings.filterwarnings(
            "ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning
        )
    controller = Controller(
        handler,
        hostname=HOST,
        port=port,
        authenticator=handler,
        auth_required=True,
        auth_require_tls=context is not None,
        tls_context=context,
        require_starttls=context is not None,
    )
    controller.start()
    return controller
