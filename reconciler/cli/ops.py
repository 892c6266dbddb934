"""Operator commands: `import` (adopt an account), `status` (on-call overview), `secret encrypt`
(age-encrypted keys in the repo) and `completion` (shell completion scripts)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from reconciler import agekeys, fpsecret
from reconciler.cli import keys
from reconciler.cli.common import (
    complete_api_users,
    emit_json,
    err,
    format_option,
    out,
    users_option,
)
from reconciler.cli.options import note
from reconciler.cli.progress import Progress
from reconciler.config import Settings, load_settings
from reconciler.errors import ExitCode
from reconciler.importer import ImportedFile
from reconciler.output import import_to_json, status_to_json
from reconciler.secrets import check_key
from reconciler.workflows.adopt import adopt
from reconciler.workflows.context import SilentReporter, open_run
from reconciler.workflows.status import AUDIT_ENTRIES, overview

PROGRESS_MIN = 20  # fewer files are written before a progress line could be read

# --- import ---------------------------------------------------------------------------------------


@click.command("import")
@users_option
@click.option("--force", is_flag=True, help="Also update existing files (comments and key order are kept).")
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATTERN",
    shell_complete=complete_api_users,
    help="Import only api_users matching this glob (repeatable).",
)
@format_option("text", "json")
def import_(users_dir: Path, force: bool, targets: tuple[str, ...], fmt: str) -> int:
    """Write users/<api_user>.yaml for every API user on the service, to adopt an existing account.

    Keys cannot be read from the service: each new file refers to an environment variable named
    after the user (BILLING_EXAMPLE_COM_API_KEY), listed at the end. Existing files are never
    touched without --force. Right after an import, `reconciler plan` shows no change.

    A live api_user that is not an email address is never used as a file name: the other users
    are imported, the refused ones are listed, and the exit code is 1.

    \b
    Example:
      reconciler import --users users && git add users && reconciler plan
      reconciler import --target 'billing*' --format json
    """
    with open_run(users_dir, SilentReporter()) as run:
        adopted = adopt(run, targets, force=force, progress=_import_progress)
        settings = run.settings
    files, results, refused = adopted.files, adopted.results, adopted.refused
    if fmt == "json":
        emit_json(import_to_json(users_dir, files, results, refused, settings.api_user))
        return ExitCode.ERROR if refused else ExitCode.OK
    for imported, result in zip(files, results, strict=True):
        out(f"{result:<10} {users_dir / imported.file_name}")  # a live name
    _import_summary(users_dir, files, results, force, settings)
    if refused:
        # Quoted with repr: the names come from the service and may hold newlines or escapes.
        err(
            f"\nerror: {len(refused)} live user(s) were NOT imported: their api_user is not an email "
            "address, so it cannot name a file in users/ (fix or delete them on the service):"
        )
        for name in refused:
            err(f"  {name!r}")
        return ExitCode.ERROR
    return ExitCode.OK


@contextlib.contextmanager
def _import_progress(total: int) -> Iterator[Callable[[], None]]:
    with Progress("Importing", total, enabled=None if total >= PROGRESS_MIN else False) as bar:
        yield bar.advance


def _import_summary(
    users_dir: Path, files: list[ImportedFile], results: list[str], force: bool, settings: Settings
) -> None:
    kept = [f for f in files if f.existing and f.changed and not force]
    written = sum(r in ("created", "updated") for r in results)
    counts = ", ".join(
        f"{results.count(r)} {r}" for r in ("created", "updated", "unchanged", "kept") if r in results
    )
    click.echo(
        f"\n{len(files)} live user(s) on the service; wrote {written} file(s) in {users_dir}"
        + (f" ({counts})." if counts else ".")
    )
    if kept:
        click.echo(
            f"{len(kept)} existing file(s) differ from the service and were kept; run again with "
            "--force to update them (comments and key order are kept)."
        )
    env_refs = [f for f in files if f.key_ref.startswith("env ")]
    if not env_refs:
        return
    click.echo("\nSet these variables to each user's CURRENT key before `reconciler apply`:")
    me = (settings.api_user or "").lower()
    for f in env_refs:
        note = (
            "  (the reconciler's own user: same key as RECONCILER_API_KEY)"
            if f.api_user.lower() == me
            else ""
        )
        out(f"  {f.key_ref.removeprefix('env '):<40} {f.api_user}{note}")  # live names: escaped
    click.echo(
        "Without them, `reconciler plan` skips key checks. With them, each key shows once as\n"
        "'not set by the reconciler yet': apply sends the same key and records its fingerprint.\n"
        "A variable holding a different key WOULD CHANGE that user's key on the service."
    )


# --- status ---------------------------------------------------------------------------------------


@click.command()
@users_option
@click.option(
    "--entries",
    type=click.IntRange(0, 1000),
    default=AUDIT_ENTRIES,
    show_default=True,
    help="How many audit log entries to show.",
)
@format_option("text", "json")
def status(users_dir: Path, entries: int, fmt: str) -> int:
    """Summarise desired vs live state, the reconcile lock and the last audit entries.

    Read-only, and each part is shown even when another fails (a broken users/ file or an
    unreachable service), so it is the first command to run when paged. Exit 0 when every part
    could be read, 1 when one could not (the JSON form says which).

    \b
    Example:
      reconciler status --users users --entries 20
      reconciler status --format json | jq .drift
    """
    with open_run(users_dir, SilentReporter()) as run:
        ok, sections = overview(run, entries)
    if fmt == "json":
        emit_json(status_to_json(ok, [s.data for s in sections]))
    else:
        for section in sections:
            out("\n".join(section.lines))  # lease holders, gateway reports: the service's words
    return ExitCode.OK if ok else ExitCode.ERROR


# --- secret ---------------------------------------------------------------------------------------


@click.group("secret")
def secret() -> None:
    """Secrets of the reconciler itself: the fingerprint secret (init), and keys kept in the users
    repo encrypted with age (encrypt).

    plan/apply decrypt them with RECONCILER_AGE_IDENTITY (the identity itself) or
    RECONCILER_AGE_IDENTITY_FILE (a file made by `secret keygen` or age-keygen).

    \b
    Example:
      reconciler secret keygen -o ci.agekey > ci.recipient   # once; its public key is the recipient
      reconciler secret generate --stdout | reconciler secret encrypt -r "$(cat ci.recipient)"
    """


@secret.command("init")
@users_option
def init(users_dir: Path) -> int:
    """Create the fingerprint secret (0600; never overwritten) and print its path.

    The reconciler records a keyed fingerprint of each key it sets; this random secret, held only
    by CI and on-call, is what keeps a fingerprint that the service shows from being checked
    against guessed keys offline. Its path is `fingerprint_secret_file` (default
    <state_dir>/fingerprint.secret beside users/); docs/runbook.md says where it lives in CI.

    \b
    Example:
      reconciler secret init --users users
      gh secret set RECONCILER_FINGERPRINT_SECRET < .reconciler/fingerprint.secret
    """
    path, created = fpsecret.init_secret(load_settings(users_dir))
    path = path.absolute()
    click.echo(str(path))
    note(("created " if created else "kept the existing ") + f"fingerprint secret {path} (mode 0600)")
    return ExitCode.OK


secret.add_command(keys.keygen)
secret.add_command(keys.generate)


@secret.command("encrypt")
@click.option(
    "--recipient",
    "-r",
    "recipients",
    multiple=True,
    required=True,
    metavar="AGE1...",
    help="age public key that may decrypt (repeat for CI and each on-call person).",
)
def encrypt(recipients: tuple[str, ...]) -> int:
    """Encrypt an API key for the users repo and print the `api_key:` YAML to paste.

    The key is read from a hidden prompt, or from stdin when stdin is not a terminal; never from
    the command line, where shell history and `ps` would keep it.

    \b
    Example:
      reconciler secret encrypt -r age1ci... -r age1oncall...    # asks for the key
      pass show mail/billing | reconciler secret encrypt --recipient age1ci...
    """
    agekeys.parse_recipients(recipients)  # fail before asking for the key
    key, source = _read_key()
    armored = agekeys.encrypt(check_key(key, source).reveal(), recipients)
    click.echo(agekeys.yaml_snippet(armored), nl=False)
    note("Paste this over the api_key: of the user's file; the plaintext key is not stored anywhere.")
    return ExitCode.OK


def _read_key() -> tuple[str, str]:
    if sys.stdin.isatty():
        value = click.prompt("API key", hide_input=True, confirmation_prompt=True, err=True)
        return str(value).strip(), "the prompt"
    return sys.stdin.read().strip(), "stdin"


# --- completion -----------------------------------------------------------------------------------


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the shell completion script for SHELL.

    \b
    Example:
      reconciler completion bash > /etc/bash_completion.d/reconciler
      eval "$(reconciler completion zsh)"     # in ~/.zshrc
    """
    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # every choice above is one of click's shells
    script = cls(root, {}, "reconciler", "_RECONCILER_COMPLETE").source()
    click.echo(script)
    return ExitCode.OK


COMMANDS = (import_, status, secret, completion)
