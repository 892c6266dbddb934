"""Renderings of a Plan: text for a terminal, Markdown for a pull request, JSON for tools.

Pure functions of a Plan. The JSON form is also the saved-plan format (`plan --out`), documented in
docs/plan-json.md; `plan_from_json` reads it back for `apply PLAN.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.executor import Outcome
from reconciler.importer import ImportedFile
from reconciler.model import COMPARED_FIELDS, Lease, LiveUser, Operation
from reconciler.plan import SENSITIVE, Action, Change, Drift, FieldChange, Plan, SkippedKey
from reconciler.safetext import defuse_commands, json_text, md_code, md_text, terminal

FORMAT_VERSION = 1
MARKDOWN_MARKER = "<!-- reconciler-plan -->"

_SYMBOL = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.UNLOCK: ("~", "cyan"),
    Action.LOCK: ("!", "magenta"),
    Action.DELETE: ("-", "red"),
}

Styler = Callable[[str, str], str]


def _plain(text: str, _colour: str) -> str:
    return text


def summary_line(plan: Plan) -> str:
    keys = plan.key_changes()
    parts = [
        f"{plan.count(Action.CREATE)} to create",
        f"{plan.count(Action.UPDATE)} to update ({keys} key change{'s' if keys != 1 else ''})",
        f"{plan.count(Action.UNLOCK)} to unlock",
        f"{plan.count(Action.LOCK)} to lock",
        f"{plan.count(Action.DELETE)} to delete",
    ]
    line = "Plan: " + ", ".join(parts) + "."
    if plan.mail_files:
        line += f" {len(plan.mail_files)} mail server file(s) would change."
    return line


# --- text -----------------------------------------------------------------------------------------


def no_changes_line(plan: Plan) -> str:
    """Never a bare "No changes" when some keys could not be compared."""
    skipped = len(plan.skipped_keys)
    if skipped:
        return f"No changes in what could be checked; {skipped} key check{_s(skipped)} skipped."
    return "No changes. The service matches users/."


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def render_text(plan: Plan, style: Styler = _plain) -> str:
    """For a terminal; every value from users/ or the service is shown with control characters
    escaped, so the text cannot drive the terminal or the Actions log."""
    lines: list[str] = []
    if plan.empty:
        lines.append(no_changes_line(plan))
    else:
        lines.append("The reconciler will perform the following actions:")
        lines.append("")
        for change in plan.changes:
            lines.extend(_text_change(change, style))
        if plan.mail_files:
            lines.append("  Mail server files that would change:")
            lines.extend(f"    ~ {terminal(name)}" for name in plan.mail_files)
            lines.append("")
        lines.extend(_text_drift(plan))
        lines.append(summary_line(plan))
    lines.extend(_text_key_checks(plan, style))
    lines.extend(f"Note: {terminal(note)}" for note in plan.notes)
    lines.extend(style(f"Refused: {terminal(reason)}", "red") for reason in plan.refusals)
    return defuse_commands("\n".join(lines)) + "\n"  # a last pass over the whole, as for Markdown


def _text_key_checks(plan: Plan, style: Styler) -> list[str]:
    if not plan.skipped_keys:
        return []
    count = len(plan.skipped_keys)
    head = (
        f"Key checks skipped for {count} user{_s(count)} ({plan.keys_checked} checked): their keys are "
        "not available here, so a changed key would not show; apply needs them."
    )
    return [style(head, "yellow")] + [
        f"  ? {terminal(k.api_user)}: {terminal(k.reason)}" for k in plan.skipped_keys
    ]


def _text_change(change: Change, style: Styler) -> list[str]:
    symbol, colour = _SYMBOL[change.action]
    head = style(f"  {symbol} {change.action.value} {terminal(change.api_user)}", colour)
    width = max([len(f.field) for f in change.fields] + [len("api_key")]) + 1
    body = [_text_field(change.action, f, width, style) for f in change.fields]
    if change.key_change:
        label = "(sensitive)" if change.action is Action.CREATE else f"{SENSITIVE} will change"
        reason = (
            f"  # {terminal(change.key_reason)}"
            if change.key_reason and change.action is not Action.CREATE
            else ""
        )
        body.append(f"      {symbol} {'api_key:'.ljust(width + 1)} {label}{reason}")
    return [head, *body, ""]


def _text_field(action: Action, f: FieldChange, width: int, style: Styler) -> str:
    name = f"{f.field}:".ljust(width + 1)
    if action is Action.CREATE:
        return f"      + {name} {_show(f.new)}"
    return f"      ~ {name} {_show(f.old)} -> {style(_show(f.new), 'bold')}"


def _show(value: Any) -> str:
    return terminal(json.dumps(value, ensure_ascii=False))


def _text_drift(plan: Plan) -> list[str]:
    drifted = [c for c in plan.changes if c.drift]
    if not drifted:
        return []
    lines = ["  Changed outside the reconciler (from the service's operation log):"]
    lines += [f"    {terminal(c.api_user)}  {terminal(d.describe())}" for c in drifted for d in c.drift]
    return [*lines, ""]


# --- Markdown --------------------------------------------------------------------------------------


def render_markdown(plan: Plan) -> str:
    """A PR comment: the marker lets CI find and update its one comment in place."""
    out = [MARKDOWN_MARKER, "### Reconciler plan", ""]
    out += _md_counts(plan)
    if plan.refusals:
        out += ["", "**Refused as unsafe:**", ""] + [f"- {md_text(r)}" for r in plan.refusals]
    if plan.empty and plan.skipped_keys:
        out += ["", f"**{md_text(no_changes_line(plan))}**"]
    elif plan.empty:
        out += ["", "No changes. The service matches `users/`."]
    out += _md_creates(plan.by_action(Action.CREATE))
    out += _md_updates(plan.by_action(Action.UPDATE))
    for action in (Action.UNLOCK, Action.LOCK, Action.DELETE):
        out += _md_names(action, plan.by_action(action))
    out += _md_drift(plan)
    if plan.mail_files:
        out += ["", f"#### Mail server files that would change ({len(plan.mail_files)})", ""]
        out += [f"- {md_code(name, table=False)}" for name in plan.mail_files]
    out += _md_key_checks(plan.skipped_keys, plan.keys_checked)
    if plan.notes:
        out += [""] + [f"> {md_text(note)}" for note in plan.notes]
    # The action prints this file into a privileged job's log, where `##[` anywhere in a line and
    # `::` at its start are workflow commands: a code span shows a value as is, so defuse the whole.
    return defuse_commands("\n".join(out)) + "\n"


MD_OPEN_ROWS = 10  # more skipped key checks than this are folded away (every PR plan has them)


def _md_key_checks(skipped: tuple[SkippedKey, ...], checked: int) -> list[str]:
    if not skipped:
        return []
    out = [
        "",
        f"#### Key checks skipped ({len(skipped)}; {checked} checked)",
        "",
        "These keys are not available to this plan, so a changed key would not show here; "
        "apply needs them and compares them.",
        "",
    ]
    table = ["| API user | reason |", "|---|---|"]
    table += [f"| {_md_name(k.api_user)} | {md_text(k.reason)} |" for k in skipped]
    if len(skipped) <= MD_OPEN_ROWS:
        return out + table
    return [*out, f"<details><summary>The {len(skipped)} users</summary>", "", *table, "", "</details>"]


def _md_counts(plan: Plan) -> list[str]:
    counts = [plan.count(a) for a in (Action.CREATE, Action.UPDATE)] + [plan.key_changes()]
    counts += [plan.count(a) for a in (Action.UNLOCK, Action.LOCK, Action.DELETE)] + [len(plan.mail_files)]
    return [
        "| create | update | key changes | unlock | lock | delete | mail files |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(str(c) for c in counts) + " |",
    ]


def _md_creates(changes: tuple[Change, ...]) -> list[str]:
    if not changes:
        return []
    # Creates leave unset optional fields out, so the columns are the union, in schema order.
    present = {f.field for change in changes for f in change.fields}
    fields = [name for name in COMPARED_FIELDS if name in present]
    out = ["", f"#### Create ({len(changes)})", ""]
    out.append("| API user | " + " | ".join(fields) + " | api_key |")
    out.append("|---" * (len(fields) + 2) + "|")
    for change in changes:
        values = {f.field: _md_value(f.new) for f in change.fields}
        cells = [values.get(name, "") for name in fields]
        out.append(f"| {_md_name(change.api_user)} | " + " | ".join(cells) + " | (sensitive) |")
    return out


def _md_updates(changes: tuple[Change, ...]) -> list[str]:
    if not changes:
        return []
    out = ["", f"#### Update ({len(changes)})", "", "| API user | field | old | new |", "|---|---|---|---|"]
    for change in changes:
        for f in change.fields:
            out.append(
                f"| {_md_name(change.api_user)} | `{f.field}` | {_md_value(f.old)} | {_md_value(f.new)} |"
            )
        if change.key_change:
            reason = md_text(change.key_reason or "")
            out.append(f"| {_md_name(change.api_user)} | `api_key` | (sensitive) | will change: {reason} |")
    return out


def _md_names(action: Action, changes: tuple[Change, ...]) -> list[str]:
    if not changes:
        return []
    out = ["", f"#### {action.value.capitalize()} ({len(changes)})", ""]
    return out + [f"- {md_code(c.api_user, table=False)}" for c in changes]


def _md_drift(plan: Plan) -> list[str]:
    drifted = [(c.api_user, d) for c in plan.changes for d in c.drift]
    if not drifted:
        return []
    out = ["", f"#### Changed outside the reconciler ({len(drifted)})", ""]
    return out + [f"- {md_code(name, table=False)} {md_text(d.describe())}" for name, d in drifted]


def _md_value(value: Any) -> str:
    """A JSON value as a code span: no Markdown, HTML or @-mention (an `@domain` sender would
    notify a GitHub user) can come out of a value, and the table stays a table."""
    return md_code(json.dumps(value, ensure_ascii=False))


def _md_name(name: str) -> str:
    """An api_user as a code span; names come from the service too, so never trust them."""
    return md_code(name)


# --- JSON ------------------------------------------------------------------------------------------


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "summary": {
            "create": plan.count(Action.CREATE),
            "update": plan.count(Action.UPDATE),
            "key_change": plan.key_changes(),
            "unlock": plan.count(Action.UNLOCK),
            "lock": plan.count(Action.LOCK),
            "delete": plan.count(Action.DELETE),
            "mail_files": len(plan.mail_files),
        },
        "changes": [_change_json(c) for c in plan.changes],
        "mail_files": list(plan.mail_files),
        "key_checks_skipped": plan.key_checks_skipped,
        "key_checks": {
            "checked": plan.keys_checked,
            "skipped": [{"api_user": k.api_user, "reason": k.reason} for k in plan.skipped_keys],
        },
        "notes": list(plan.notes),
        "refusals": list(plan.refusals),
        "desired_digest": plan.desired_digest,
        "live_versions": dict(sorted(plan.live_versions.items())),
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "api_user": change.api_user,
        "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in change.fields],
        "api_key": f"{SENSITIVE} will change" if change.key_change else None,
        "key_reason": change.key_reason,
        "version": change.version,
        "drift": [_drift_json(d) for d in change.drift],
    }


def _drift_json(drift: Drift) -> dict[str, Any]:
    return {
        "field": drift.field,
        "changed_by": drift.actor,
        "via": "api",
        "at": drift.at.isoformat().replace("+00:00", "Z"),
        "text": drift.describe(),
    }


def render_json(plan: Plan) -> str:
    return json_text(json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False)) + "\n"


def plan_from_json(data: dict[str, Any]) -> Plan:
    """Read a saved plan back; raises KeyError/ValueError on a malformed document."""
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported plan format_version {data.get('format_version')!r}")
    changes = tuple(
        Change(
            action=Action(c["action"]),
            api_user=c["api_user"],
            fields=tuple(FieldChange(f["field"], f["old"], f["new"]) for f in c["fields"]),
            key_change=c["api_key"] is not None,
            key_reason=c["key_reason"],
            # Plans saved before contract 2.1 have neither: their writes are then unconditional.
            version=c.get("version"),
            drift=tuple(
                Drift(d["field"], d["changed_by"], datetime.fromisoformat(d["at"]))
                for d in c.get("drift", ())
            ),
        )
        for c in data["changes"]
    )
    key_checks = data.get("key_checks") or {}  # absent from plans saved before it existed
    return Plan(
        changes=changes,
        desired_digest=data["desired_digest"],
        live_versions=dict(data["live_versions"]),
        key_checks_skipped=bool(data["key_checks_skipped"]),
        keys_checked=int(key_checks.get("checked", 0)),
        skipped_keys=tuple(SkippedKey(k["api_user"], k["reason"]) for k in key_checks.get("skipped", [])),
        notes=tuple(data["notes"]),
        mail_files=tuple(data["mail_files"]),
        refusals=tuple(data["refusals"]),
    )


# --- JSON of the other commands (schemas in docs/schemas/, described in docs/cli-json.md) -----------

OUTPUT_FORMAT_VERSION = 1


def plan_summary_json(plan: Plan) -> dict[str, int]:
    return dict(plan_to_json(plan)["summary"])


def error_to_json(message: str, problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What every command prints on stdout instead of its output when it fails under --format json."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": False,
        "error": message,
        "problems": problems or [],
    }


def live_to_json(users: Sequence[LiveUser]) -> dict[str, Any]:
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": True,
        "total": len(users),
        "api_users": [u.model_dump(mode="json") for u in users],
    }


def messages_to_json(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`service messages --format json` (docs/schemas/messages.schema.json)."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": True,
        "total": len(messages),
        "messages": [dict(m) for m in messages],
    }


def status_to_json(ok: bool, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The status document: each section of `status` adds its top-level keys."""
    document: dict[str, Any] = {"format_version": OUTPUT_FORMAT_VERSION, "ok": ok}
    for part in parts:
        document.update(part)
    return document


def import_to_json(
    users_dir: Path,
    files: Sequence[ImportedFile],
    results: Sequence[str],
    refused: Sequence[str],
    self_user: str | None,
) -> dict[str, Any]:
    """`import --format json`: what happened to each file, and the variables to set before apply."""
    me = (self_user or "").lower()
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": not refused,
        "users_dir": str(users_dir),
        "files": [
            {
                "api_user": f.api_user,
                "file": str(users_dir / f.file_name),
                "result": result,
                "key_ref": f.key_ref,
            }
            for f, result in zip(files, results, strict=True)
        ],
        "refused": list(refused),
        "env": [
            {
                "variable": f.key_ref.removeprefix("env "),
                "api_user": f.api_user,
                "reconciler_user": f.api_user.lower() == me,
            }
            for f in files
            if f.key_ref.startswith("env ")
        ],
    }


def apply_to_json(
    command: str,
    *,
    ok: bool,
    plan: Plan | None,
    outcomes: Sequence[Outcome],
    pending: Plan | None,
    mail: Mapping[str, Any] | None,
    error: str | None = None,
) -> dict[str, Any]:
    """`apply`/`reconcile --format json`: the plan applied, each user's outcome, whether a second
    plan found nothing left, and (reconcile) the mail step."""
    document: dict[str, Any] = {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": ok,
        "command": command,
        "plan": plan_to_json(plan) if plan is not None else None,
        "outcomes": [
            {
                "api_user": o.change.api_user,
                "action": o.change.action.value,
                "outcome": o.status.value,
                "detail": o.detail or None,
            }
            for o in outcomes
        ],
        "converged": pending is None,
        "pending": [
            {"action": c.action.value, "api_user": c.api_user} for c in (pending.changes if pending else ())
        ],
        "mail": dict(mail) if mail is not None else None,
    }
    if error is not None:
        document["error"] = error
    return document


def lease_to_json(name: str, lease: Lease | None, *, error: str | None = None) -> dict[str, Any]:
    """The service lease in `status --format json`; never its token (it fences writes)."""
    held = lease is not None
    return {
        "name": name,
        "ok": error is None,
        "held": held,
        "holder": lease.holder if lease else None,
        "host": lease.host if lease else None,
        "pid": lease.pid if lease else None,
        "command": lease.command if lease else None,
        "acquired_at": _utc(lease.acquired_at) if lease else None,
        "expires_at": _utc(lease.expires_at) if lease else None,
        "error": error,
    }


def history_to_json(since: datetime, operations: Sequence[Operation]) -> dict[str, Any]:
    """`history --format json`: the service's operation log, newest first (never a key's value)."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": True,
        "since": _utc(since),
        "operations": [op.model_dump(mode="json") for op in operations],
    }


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
