"""A project directory like the one `make demo` leaves (users/, secrets/, a git checkout) wired to a
running service with the demo's admin and keys, and a runner for documented examples in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.newkeys import generate_age_identity, generate_api_key
from reconciler_service.server import free_port
from tests.docs.examples import ROOT, SERVICE_RUN, Example, not_run, prepared

DEMO_ADMIN = "reconciler@example.com"  # users/reconciler@example.com.yaml
BIN = str(Path(sys.executable).parent)
# A fresh machine has no mail server: the daemons' commands are absent, so `mail_checks: skip` leaves
# their checks and reloads out and says so. (These tests run as root on machines whose own Postfix
# and Dovecot must never be checked against a sandbox's files or reloaded; tests/mail proves that side.)
NO_DAEMONS = {
    f"RECONCILER_{d}_COMMAND": f"/nonexistent/{d.lower()}"
    for d in ("POSTFIX", "POSTCONF", "DOVECONF", "DOVEADM")
}


@dataclass(frozen=True)
class Ran:
    example: Example
    command: str
    code: int
    output: str


def make_project(root: Path, source: Path = ROOT) -> dict[str, str]:
    """users/, schema/ and secrets/ as the demo has them, in a git checkout; the keys the users'
    files point at, returned as the environment that holds them."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "users", root / "users")
    shutil.copytree(source / "schema", root / "schema")
    (root / "secrets").mkdir(mode=0o700)
    legacy = root / "secrets" / "legacy-crm.key"
    legacy.write_text(generate_api_key().reveal() + "\n")
    legacy.chmod(0o600)
    identity, recipient = generate_age_identity()
    (root / "sandbox.agekey").write_text(identity)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    # As the demo does: the fingerprint secret apply needs (docs/security.md), made before any example.
    subprocess.run(
        [str(Path(BIN) / "reconciler"), "secret", "init", "--users", str(root / "users")],
        check=True,
        capture_output=True,
    )
    return {
        "BILLING_API_KEY": generate_api_key().reveal(),
        "NEWSLETTER_API_KEY": generate_api_key().reveal(),
        "RECIPIENT": recipient,
    }


def environment(base: Mapping[str, str], home: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in base.items() if not k.startswith("RECONCILER_")}
    return {
        **keep,
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "NO_COLOR": "1",
        "RECONCILER_MAIL_CHECKS": "skip",
        "FREE_PORT": str(free_port("127.0.0.1")),
        "FREE_SMTP_PORT": str(free_port("127.0.0.1")),
        "GIT_AUTHOR_NAME": "Newcomer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.com",
        "GIT_COMMITTER_NAME": "Newcomer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.com",
        **extra,
    }


def run_examples(
    examples: Sequence[Example], cwd: Path, env: Mapping[str, str], *, prefix: Sequence[str] = ()
) -> list[Ran]:
    """Each example that can run here, in order, in `cwd`, by bash (as `prefix`, e.g. runuser, says)."""
    ran = []
    for example in examples:
        if not_run(example) is not None:
            continue
        command = prepared(example)
        done = subprocess.run(
            [*prefix, "bash", "-c", command],
            cwd=cwd,
            env=dict(env),
            input="Key12345abcdef\n",  # what `secret encrypt` reads when stdin is not a terminal
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = done.stdout + done.stderr
        code = done.returncode
        if code == 0 and SERVICE_RUN.search(command) and "listening on" not in output:
            code = -1  # stopped, but it never said it was serving
        ran.append(Ran(example, command, code, output))
    return ran


def failures(ran: Sequence[Ran]) -> str:
    return "\n\n".join(
        f"{r.example.where}: {r.example.command}\n  ran: {r.command}\n  exit {r.code}\n{r.output[-1500:]}"
        for r in ran
        if r.code != 0
    )


def user_env() -> dict[str, str]:
    return dict(os.environ)
