"""Operator commands: `import` (adopt an account), `status` (on-call overview), `secret encrypt`
(age-encrypted keys in the repo) and `completion` (shell completion scripts)."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from click.shell_completion import get_completion_class

from reconciler import agekeys, engine, gateway, importer
from reconciler.backend.http.client import ServiceClient
from reconciler.cli import keys
from reconciler.cli.common import (
    complete_api_users,
    emit_json,
    err,
    format_option,
    users_option,
)
from reconciler.cli.options import note
from reconciler.cli.progress import Progress
from reconciler.cli.table import aligned, printable
from reconciler.config import Settings, load_settings
from reconciler.desired import load_users
from reconciler.errors import ExitCode, NotFound, ReconcilerError, ValidationFailed
from reconciler.output import (
    import_to_json,
    lease_to_json,
    plan_summary_json,
    status_to_json,
    summary_line,
)
from reconciler.plan import targeted
from reconciler.secrets import check_key
from reconciler.state import (
    LEASE_NAME,
    STALE_AFTER,
    AuditLog,
    LockInfo,
    commits_between,
    lock_path,
    read_lock,
)

AUDIT_ENTRIES = 10
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
    settings = load_settings(users_dir)
    with ServiceClient.from_settings(settings) as client:
        live = [u for u in client.list_users() if targeted(u.api_user, targets)]
    users_dir.mkdir(parents=True, exist_ok=True)
    valid, refused = importer.importable(live)
    files = importer.import_users(valid, _existing_files(users_dir))
    results: list[str] = []
    with Progress("Importing", len(files), enabled=None if len(files) >= PROGRESS_MIN else False) as bar:
        for imported in files:
            results.append(_import_one(users_dir, imported, force))
            bar.advance()
    if fmt == "json":
        emit_json(import_to_json(users_dir, files, results, refused, settings.api_user))
        return ExitCode.ERROR if refused else ExitCode.OK
    for imported, result in zip(files, results, strict=True):
        click.echo(f"{result:<10} {users_dir / imported.file_name}")
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


def _existing_files(users_dir: Path) -> dict[str, str]:
    # Symlinks are refused by `validate`; never follow one to write somewhere else.
    paths = [p for p in users_dir.glob("*" + importer.SUFFIX) if p.is_file() and not p.is_symlink()]
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def _import_one(users_dir: Path, imported: importer.ImportedFile, force: bool) -> str:
    if not imported.changed:
        return "unchanged"
    if imported.existing and not force:
        return "kept"
    _write_atomically(_target(users_dir, imported.file_name), imported.text)
    return "updated" if imported.existing else "created"


def _target(users_dir: Path, file_name: str) -> Path:
    """`users_dir / file_name`, refused unless it is a file directly inside users_dir."""
    path = users_dir / file_name
    if path.resolve().parent != users_dir.resolve() or path.name != file_name:
        raise ReconcilerError(f"refusing to write {file_name!r}: it is outside {users_dir}")
    return path


def _write_atomically(path: Path, text: str) -> None:
    # A reader (an editor, a concurrent validate) sees the old file or the new one, never half.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".import-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import_summary(
    users_dir: Path, files: list[importer.ImportedFile], results: list[str], force: bool, settings: Settings
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
        click.echo(f"  {f.key_ref.removeprefix('env '):<40} {f.api_user}{note}")
    click.echo(
        "Without them, `reconciler plan` skips key checks. With them, each key shows once as\n"
        "'not set by the reconciler yet': apply sends the same key and records its fingerprint.\n"
        "A variable holding a different key WOULD CHANGE that user's key on the service."
    )


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    lines: tuple[str, ...]
    ok: bool = True
    # The same facts for `--format json`: a top-level key of the status document (status_to_json).
    data: dict[str, Any] = field(default_factory=dict)


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
    settings = load_settings(users_dir)
    state_dir = users_dir.parent / settings.state_dir
    sections = [
        _drift_section(users_dir, settings),
        _lease_section(settings),
        _lock_section(state_dir, settings.api_url),
        _gateways_section(users_dir, settings),
        _audit_section(state_dir, entries),
    ]
    ok = all(s.ok for s in sections)
    if fmt == "json":
        emit_json(status_to_json(ok, [s.data for s in sections]))
    else:
        for section in sections:
            click.echo("\n".join(section.lines))
    return ExitCode.OK if ok else ExitCode.ERROR


def _drift_section(users_dir: Path, settings: Settings) -> _Section:
    desired_json: dict[str, Any] = {"ok": False, "users_dir": str(users_dir), "users": None, "problems": 0}
    live_json: dict[str, Any] = {"ok": None, "service": settings.api_url, "users": None, "error": None}
    drift_json: dict[str, Any] = {
        "checked": False,
        "drift": None,
        "summary": None,
        "changes": [],
        "notes": [],
    }
    data = {"desired": desired_json, "live": live_json, "drift": drift_json}
    try:
        desired = load_users(users_dir)
    except ValidationFailed as exc:
        desired_json["problems"] = len(exc.problems)
        return _Section(
            (f"Desired: INVALID, {len(exc.problems)} problem(s); run `reconciler validate`",), False, data
        )
    desired_json.update(ok=True, users=len(desired.users))
    lines = [f"Desired: {len(desired.users)} user(s) in {users_dir}"]
    try:
        with ServiceClient.from_settings(settings) as client:
            live = client.list_users()
    except ReconcilerError as exc:
        live_json.update(ok=False, error=str(exc))
        return _Section((*lines, f"Live:    UNAVAILABLE: {exc}"), False, data)
    live_json.update(ok=True, users=len(live))
    lines.append(f"Live:    {len(live)} user(s) on {settings.api_url}")
    resolved = engine.resolve_keys(desired)
    if resolved.unusable:
        drift_json["notes"] = [f"unusable key: {p}" for p in resolved.unusable]
        bad = [f"Keys:    UNUSABLE: {p}" for p in resolved.unusable]
        return _Section((*lines, *bad, "         `reconciler plan` fails until these are fixed"), False, data)
    plan = engine.compute_plan(
        desired, live, resolved, settings=settings, guards=engine.guards_from(settings)
    )
    drift_json.update(
        checked=True,
        drift=bool(plan.changes),
        summary=plan_summary_json(plan),
        changes=[{"action": c.action.value, "api_user": c.api_user} for c in plan.changes],
        notes=list(plan.notes),
    )
    drift = "no" if not plan.changes else "YES: " + summary_line(plan) + " Run `reconciler plan`."
    lines.append(f"Drift:   {drift}")
    lines += [f"Note:    {note}" for note in plan.notes]
    return _Section(tuple(lines), data=data)


def gateway_status(users_dir: Path, settings: Settings) -> tuple[list[dict[str, Any]], bool]:
    """Every gateway's last report with `behind` against this checkout's users/ (for text and
    JSON); False when the service cannot be asked."""
    try:
        digest: str | None = load_users(users_dir).digest
    except ValidationFailed:
        digest = None  # then only a failed last render counts as behind
    try:
        with ServiceClient.from_settings(settings) as client:
            reports = client.list_gateways()
        return gateway.with_behind(reports, digest, lambda c: commits_between(users_dir, c)), True
    except NotFound:
        return [], True  # a service without gateway reports: nothing has reported
    except ReconcilerError:
        return [], False


def _gateways_section(users_dir: Path, settings: Settings) -> _Section:
    rows, ok = gateway_status(users_dir, settings)
    if not ok:
        return _Section(("Gateways: UNAVAILABLE (the service cannot be asked)",), False, {"gateways": []})
    return _Section(tuple(gateway.text_lines(rows)), data={"gateways": rows})


def _lease_section(settings: Settings) -> _Section:
    """The service's lease (contract 2.1): who runs apply/reconcile anywhere right now."""
    try:
        with ServiceClient.from_settings(settings) as client:
            lease = client.get_lease(LEASE_NAME)
    except ReconcilerError as exc:
        data = {"lease": lease_to_json(LEASE_NAME, None, error=str(exc))}
        return _Section((f"Lease:   UNAVAILABLE: {exc}",), False, data)
    data = {"lease": lease_to_json(LEASE_NAME, lease)}
    if lease is None:
        return _Section((f"Lease:   '{LEASE_NAME}' on the service is free",), data=data)
    expires = lease.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return _Section(
        (f"Lease:   '{LEASE_NAME}' held by {lease.describe()}, expires {expires} unless renewed",), data=data
    )


def _lock_section(state_dir: Path, service: str) -> _Section:
    """The service's lock and any other lock in the state dir (a gateway's mail-directory lock)."""
    paths = sorted(
        p for p in {lock_path(state_dir, service), *state_dir.glob("reconcile-*.lock")} if p.exists()
    )
    lines = [_describe_lock(path) for path in paths]
    return _Section(tuple(lines) or ("Lock:    free",), data={"locks": [_lock_json(p) for p in paths]})


def _lock_json(path: Path) -> dict[str, Any]:
    info = read_lock(path)
    if info is None:
        return {"file": str(path), "readable": False, "stale": True}
    age = _age(info)
    return {
        "file": str(path),
        "readable": True,
        **asdict(info),
        "stale": age is None or age > STALE_AFTER,
    }


def _describe_lock(path: Path) -> str:
    info = read_lock(path)
    if info is None:
        return f"Lock:    {path} exists but is unreadable (a crashed run); the next run takes it over"
    return f"Lock:    {info.service} held by {info.describe()}{_lock_age(info)}\n         file {path}"


def _age(info: LockInfo) -> timedelta | None:
    try:
        return datetime.now(UTC) - datetime.fromisoformat(info.started_at)
    except ValueError:
        return None


def _lock_age(info: LockInfo) -> str:
    age = _age(info)
    if age is None:
        return ""
    minutes = int(age.total_seconds() // 60)
    stale = "; STALE, the next run takes it over" if age > STALE_AFTER else ""
    return f", {minutes} min ago{stale}"


def _audit_section(state_dir: Path, count: int) -> _Section:
    log = AuditLog(state_dir, {})
    read = log.read()
    # A line cut off by a crash is reported and skipped; the lines around it still count.
    damaged = [f"  line {n} of {log.path} is not JSON (cut off by a crash?); skipped" for n in read.damaged]
    unknown = read.unsettled()
    notes = [f"  {len(unknown)} change(s) with outcome unknown: the next plan or apply settles them"]
    tail = read.shown()[-count:]
    data: dict[str, Any] = {
        "file": str(log.path),
        "ok": True,
        "entries": tail,
        "outcome_unknown": len(unknown),
        "damaged_lines": read.damaged,
    }
    if not tail:
        return _Section((f"Audit:   no entries in {log.path}", *damaged), data={"audit": data})
    table = aligned(("WHEN", "BY", "ACTION", "API USER", "OUTCOME"), [_audit_row(e) for e in tail])
    lines = (f"Audit:   last {len(tail)} of {log.path}", *(printable("  " + line) for line in table))
    return _Section((*lines, *(notes if unknown else []), *damaged), data={"audit": data})


def _audit_row(entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """One row per audit entry; a mail-step entry names its mail directory where a change names its
    API user, and what it changed."""
    when = str(entry.get("time", "?"))[:19].replace("T", " ")
    action = str(entry.get("action", "?")) + (" +key" if entry.get("key_change") else "")
    outcome = str(entry.get("outcome", "?"))
    if entry.get("action") == "mail":
        subject = f"mail dir {entry.get('mail_dir', '?')}"
        changed = entry.get("changed")
        outcome += f" ({len(changed)} file(s) changed)" if isinstance(changed, list) else ""
    else:
        subject = str(entry.get("api_user", "?"))
    outcome += f" ({entry['detail']})" if entry.get("detail") else ""
    return when, str(entry.get("actor", "-")), action, subject, outcome


# --- secret ---------------------------------------------------------------------------------------


@click.group("secret")
def secret() -> None:
    """Keys kept in the users repo, encrypted with age.

    plan/apply decrypt them with RECONCILER_AGE_IDENTITY (the identity itself) or
    RECONCILER_AGE_IDENTITY_FILE (a file made by `secret keygen` or age-keygen).

    \b
    Example:
      reconciler secret keygen -o ci.agekey > ci.recipient   # once; its public key is the recipient
      reconciler secret generate --stdout | reconciler secret encrypt -r "$(cat ci.recipient)"
    """


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
