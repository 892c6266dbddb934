"""A service on loopback that is not running: say so at once, with the command that starts it.

urllib3 retries a refused connection with backoff (3.3 s by default), which is right for a remote
service that is restarting and wrong for the embedded one on this machine that was never started
(or was stopped at the end of `make demo`): nothing will start listening while we wait. So before
the first request to a loopback URL, one TCP connect tells a refused port apart, and the error names
the URL and the command that starts the embedded service. Remote URLs keep their retries.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from reconciler.config import is_loopback_host
from reconciler.errors import ServiceUnavailable

START_COMMAND = "reconciler-service run"  # the embedded service's own command (docs/cli.md)
PROBE_TIMEOUT = 1.0  # seconds; a loopback connect answers in microseconds


def start_hint(base_url: str, api_user: str | None) -> str:
    port = urlsplit(base_url).port or 80
    admin = api_user or "ADMIN@EXAMPLE.COM"
    return (
        f'RECONCILER_SERVICE_ADMIN_KEY="$RECONCILER_API_KEY" {START_COMMAND} '
        f"--db .reconciler/service.db --port {port} --admin-user {admin}"
    )


def refuse_if_nothing_listens(base_url: str, api_user: str | None) -> None:
    """ServiceUnavailable at once when `base_url` is on loopback and its port refuses connections."""
    parts = urlsplit(base_url)
    if not parts.hostname or not is_loopback_host(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT):
            return
    except ConnectionRefusedError:
        pass
    except OSError:
        return  # anything else (a timeout, no IPv6): let the request and its retries say
    raise ServiceUnavailable(
        f"cannot reach the service at {base_url}: nothing listens on {parts.hostname}:{port} "
        f"(connection refused). Is the service running? The embedded one starts with:\n  "
        + start_hint(base_url, api_user)
    )
