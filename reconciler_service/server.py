"""The embedded service: the WSGI app on werkzeug's threaded server, plus the SMTP relay, in one
process. `EmbeddedService` is what `reconciler-service run`, the test fixture and the benchmark start.

Keep-alive: werkzeug 3.1's server answers every request with `Connection: close` and drains the
socket after each response, so it cannot serve a second request on a connection. We keep its server
(no hand-parsed HTTP) and accept one TCP connect per request; on loopback that costs ~0.1 ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from reconciler_service.app import BASE, ServiceApp
from reconciler_service.faults import FaultConfig
from reconciler_service.keys import DEFAULT_SCRYPT_N
from reconciler_service.store import Store

log = logging.getLogger("reconciler_service")

ADMIN_ATTRIBUTES: dict[str, Any] = {
    "role": "admin",
    "operation": True,
    "access": {"http_api": True, "smtp": False, "own_data_only": False},
    "timezone": "UTC",
    "locked": False,
    "smtp_senders": None,
    "description": "first admin, created by `reconciler-service run`",
}


class _Handler(WSGIRequestHandler):
    """Logs through `logging` (paths and status only: no header or body is ever logged) and lets
    the service cut its idle connections when it stops."""

    timeout = 30  # an idle client must not hold a thread forever

    def setup(self) -> None:
        super().setup()
        _connections(self.server).add(self.connection)

    def finish(self) -> None:
        _connections(self.server).discard(self.connection)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug formats (and IRI-decodes) every request line before logging it; skip that work
        # unless someone asked for DEBUG, since it is paid on every request.
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.log(logging.ERROR if type == "error" else logging.DEBUG, message.rstrip(), *args)


def _connections(server: Any) -> set[socket.socket]:
    conns: set[socket.socket] = server.__dict__.setdefault("reconciler_connections", set())
    return conns


@dataclass
class ServiceOptions:
    host: str = "127.0.0.1"
    port: int = 8725  # 0 picks a free port
    smtp_port: int | None = None  # None: no relay; 0 picks a free port
    faults: FaultConfig = field(default_factory=FaultConfig)
    scrypt_n: int = DEFAULT_SCRYPT_N
    # >1 pre-forks that many HTTP worker processes on one listening socket: a single Python process
    # serialises every request on its GIL, which is what bounds throughput on a small machine.
    workers: int = 1


class EmbeddedService:
    """A running service; `stop()` shuts the HTTP server, the relay and the database down."""

    def __init__(self, db_path: Path, options: ServiceOptions) -> None:
        self.options = options
        self.store = Store(db_path, scrypt_n=options.scrypt_n)
        self.faults = options.faults
        self._http: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._relay: Any = None
        self.smtp_port: int | None = None
        self._workers: list[int] = []
        self._listener: socket.socket | None = None

    @property
    def base_url(self) -> str:
        if self._listener is not None:
            port = self._listener.getsockname()[1]
        else:
            assert self._http is not None
            port = self._http.server_port
        return f"http://{self.options.host}:{port}{BASE}"

    def ensure_admin(self, api_user: str, key: str) -> None:
        """Create the first admin unless it exists (its key is then left as it is)."""
        if self.store.get(api_user) is None:
            self.store.create(api_user, dict(ADMIN_ATTRIBUTES), key, {})

    def start(self) -> EmbeddedService:
        if self.options.workers > 1:
            self._start_workers()
        else:
            self._start_http_thread()
        if self.options.smtp_port is not None:
            from reconciler_service.relay import start_relay

            self.smtp_port = self.options.smtp_port or free_port(self.options.host)
            self._relay = start_relay(self.store, self.options.host, self.smtp_port)
        return self

    def _start_http_thread(self) -> None:
        app = ServiceApp(self.store, self.faults)
        self._http = make_server(
            self.options.host, self.options.port, app, threaded=True, request_handler=_Handler
        )
        # A short poll interval makes stop() quick: tests start and stop a service each.
        server = self._http
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.02), name="service-http", daemon=True
        )
        self._thread.start()

    def _start_workers(self) -> None:
        """Bind once, then fork the workers before this process starts any thread (forking a
        threaded process is unsafe). Each worker opens its own SQLite connections; the parent keeps
        only the relay. Runtime changes to `faults` reach only the single-process mode."""
        listener = socket.create_server((self.options.host, self.options.port), backlog=128)
        self.store.close()  # no SQLite handle may cross a fork
        for index in range(self.options.workers):
            pid = os.fork()
            if pid == 0:
                _worker_main(listener, self.store.path, self.options, index)
            self._workers.append(pid)
        self._listener = listener

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        if self._http is not None:
            self._http.shutdown()
            for conn in list(_connections(self._http)):
                _shutdown_quietly(conn)
            self._http.server_close()
            self._http = None
        self._stop_workers()
        self.store.close()

    def _stop_workers(self) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self._workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._workers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> EmbeddedService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _worker_main(listener: socket.socket, db_path: Path, options: ServiceOptions, index: int) -> NoReturn:
    """One pre-forked HTTP worker: serve until SIGTERM, then leave without running the parent's
    cleanup (atexit handlers, the relay) that the fork copied."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    faults = replace(
        options.faults, seed=None if options.faults.seed is None else options.faults.seed + index
    )
    app = ServiceApp(Store(db_path, scrypt_n=options.scrypt_n), faults)
    server = make_server(
        options.host, options.port, app, threaded=True, request_handler=_Handler, fd=listener.fileno()
    )
    try:
        server.serve_forever()
    finally:
        os._exit(0)


def free_port(host: str = "127.0.0.1") -> int:
    # aiosmtpd's Controller connects to its own port to start, so it cannot be given port 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
