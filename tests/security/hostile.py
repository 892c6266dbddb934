"""A hostile stand-in for the service: real HTTP on loopback, answering every read with values that
try to act where they are shown (terminal escapes, GitHub workflow commands, git options).

It models what anyone who can write to the service (a console user, a stolen gateway credential,
the service itself) can make the reconciler read back: the tool must show each value inertly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Each one acts somewhere if printed raw: clear the screen and set the title, an OSC 8 link, a C1
# CSI (one character), a bidi override, an old-style and a new-style workflow command on a new line.
ESC = "\x1b[2J\x1b]0;owned\x07"
HOSTILE = f"{ESC}\x9b31m\u202e##[error title=PWNED]forged\n::add-mask::x"
GIT_OPTION = "--output=pwned"
STAMP = "2026-01-01T00:00:00Z"


def _user() -> dict[str, Any]:
    return {
        "api_user": f"evil{ESC}@example.com",
        "role": "normal",
        "access": {"http_api": True, "smtp": False, "own_data_only": False},
        "timezone": "UTC",
        "description": HOSTILE,
        "smtp_senders": [HOSTILE],
        "key_updated_at": STAMP,
        "annotations": {"note": HOSTILE},
        "version": "1",
    }


def _answers() -> dict[str, Any]:
    lease = {
        "name": "reconcile",
        "holder": HOSTILE,
        "host": HOSTILE,
        "pid": 1,
        "command": HOSTILE,
        "acquired_at": STAMP,
        "expires_at": "2099-01-01T00:00:00Z",
    }
    report = {
        "name": f"gw{ESC}",
        "commit": GIT_OPTION,
        "desired_digest": HOSTILE,
        "result": "ok" + ESC,
        "smtp_users": 1,
        "rendered_at": HOSTILE,
        "reported_at": HOSTILE,
    }
    operation = {
        "id": 1,
        "at": STAMP,
        "actor_api_user": HOSTILE,
        "actor": HOSTILE,
        "commit": HOSTILE,
        "run": HOSTILE,
        "source": "reconciler",
        "action": "update",
        "api_user": HOSTILE,
        "fields": [HOSTILE],
    }
    return {
        "/api/v2/api_users": {"api_users": [_user()], "total": 1},
        "/api/v2/leases/reconcile": lease,
        "/api/v2/gateways": {"gateways": [report]},
        "/api/v2/operations": {"operations": [operation]},
        "/api/v2/relay/messages": {
            "messages": [
                {"received_at": STAMP, "api_user": HOSTILE, "mail_from": HOSTILE, "rcpt_tos": [HOSTILE]}
            ]
        },
    }


class _Handler(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = self.answers.get(urlsplit(self.path).path)
        if body is None:
            self._send(404, {"errors": [{"code": "not_found", "field": None, "message": HOSTILE}]})
        else:
            self._send(200, body)

    def do_PUT(self) -> None:
        self._send(400, {"errors": [{"code": "invalid", "field": HOSTILE, "message": HOSTILE}]})

    do_POST = do_PATCH = do_DELETE = do_PUT

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Hostile:
    url: str


@contextmanager
def hostile_service() -> Iterator[Hostile]:
    handler = type("Handler", (_Handler,), {"answers": _answers()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hostile(f"http://127.0.0.1:{server.server_address[1]}/api/v2")
    finally:
        server.shutdown()
        server.server_close()
