"""`reconciler-service run`: the embedded service's command line (its own distribution,
reconciler_service/pyproject.toml). It never imports the tool, and the tool never imports it."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from reconciler_service import __version__
from reconciler_service.faults import FaultConfig
from reconciler_service.model import EMAIL_RE, KEY_RE, KEY_RULE
from reconciler_service.server import EmbeddedService, ServiceOptions

ADMIN_KEY_ENV = "RECONCILER_SERVICE_ADMIN_KEY"
Rate = click.FloatRange(0.0, 1.0)


class SetupError(click.ClickException):
    """A bad option or environment: exit 1 with one line on stderr, no traceback."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler-service")
def main() -> None:
    """The embedded service: the API-users HTTP API of docs/contract.md (and an SMTP relay) on
    loopback, for demos and tests. Production runs the real service instead."""


@main.command("run")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8725, show_default=True)
@click.option("--smtp-port", type=click.IntRange(1, 65535), help="Also run the SMTP relay on this port.")
@click.option(
    "--admin-user", required=True, help=f"First admin, created if absent; key from {ADMIN_KEY_ENV}."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="HTTP worker processes sharing the port (the relay stays in the main process).",
)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Delay every API-users request.")
@click.option("--fault-5xx-rate", type=Rate, default=0.0, help="Share of requests answered 503.")
@click.option(
    "--fault-429-rate", type=Rate, default=0.0, help="Share of requests answered 429 + Retry-After."
)
@click.option("--fault-drop-rate", type=Rate, default=0.0, help="Share of responses lost (connection cut).")
@click.option("--fault-retry-after", type=click.IntRange(0, 3600), default=1, show_default=True)
@click.option("--fault-seed", type=int, help="Seed for reproducible faults.")
@click.option("--fail-writes-for", multiple=True, metavar="EMAIL", help="Writes to this api_user answer 500.")
@click.option(
    "--ignore-writes-for",
    multiple=True,
    metavar="EMAIL",
    help="PATCHes to this api_user answer 200 but change nothing.",
)
def run(
    *,
    db_path: Path,
    host: str,
    port: int,
    smtp_port: int | None,
    admin_user: str,
    workers: int,
    latency_ms: float,
    fault_5xx_rate: float,
    fault_429_rate: float,
    fault_drop_rate: float,
    fault_retry_after: int,
    fault_seed: int | None,
    fail_writes_for: tuple[str, ...],
    ignore_writes_for: tuple[str, ...],
) -> None:
    """Run the embedded service until SIGTERM or Ctrl-C.

    \b
    Example:
      RECONCILER_SERVICE_ADMIN_KEY=... reconciler-service run --db service.sqlite \\
          --admin-user admin@example.com --smtp-port 2525
    """
    admin_key = _admin_key(admin_user)
    _log_to_stderr()
    faults = FaultConfig(
        latency_ms=latency_ms,
        rate_5xx=fault_5xx_rate,
        rate_429=fault_429_rate,
        rate_drop=fault_drop_rate,
        retry_after_s=fault_retry_after,
        seed=fault_seed,
        fail_writes_for={e.lower() for e in fail_writes_for},
        ignore_writes_for={e.lower() for e in ignore_writes_for},
    )
    options = ServiceOptions(host=host, port=port, smtp_port=smtp_port, faults=faults, workers=workers)
    embedded = EmbeddedService(db_path, options)
    embedded.ensure_admin(admin_user, admin_key)
    try:
        embedded.start()
    except OSError as exc:
        embedded.stop()
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    _serve_until_signal(embedded)


def _admin_key(admin_user: str) -> str:
    if not EMAIL_RE.match(admin_user):
        raise SetupError("--admin-user must be an email address like admin@example.com")
    key = os.environ.get(ADMIN_KEY_ENV, "").strip()
    if not key:
        raise SetupError(
            f"set {ADMIN_KEY_ENV} to the first admin's key (never pass a key on the command line)"
        )
    if not KEY_RE.match(key):
        raise SetupError(f"{ADMIN_KEY_ENV} is not a valid key: it must be {KEY_RULE}")
    return key


def _log_to_stderr() -> None:
    # Request lines are DEBUG; INFO shows relay decisions and errors. aiosmtpd ("mail.log") warns on
    # every connection that AUTH without TLS is risky, which on loopback is the point: errors only.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.ERROR)


def _serve_until_signal(embedded: EmbeddedService) -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    relay = f", SMTP relay on {embedded.options.host}:{embedded.smtp_port}" if embedded.smtp_port else ""
    click.echo(f"listening on {embedded.base_url}{relay}", err=False)
    while not stopping.wait(0.5):
        pass
    click.echo("stopping", err=True)
    embedded.stop()
