"""The console plan as a checklist, in text, Markdown (the pull request comment) and JSON (pure).

No key appears here: a step names where the key comes from, and the guided session shows the key
itself on the terminal only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.backend.cmc.steps import NOT_OBSERVABLE, OBSERVABLE, Step, Task
from reconciler.output import MARKDOWN_MARKER
from reconciler.safetext import md_code, md_text, terminal

MARKER = MARKDOWN_MARKER  # the same pull request comment is updated in place, whatever the backend
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checklist:
    tasks: tuple[Task, ...]
    drift: tuple[str, ...] = ()  # "api_user: operation by account at time"
    notes: tuple[str, ...] = ()
    probes: int = 0
    failed_authentications: int = 0

    @property
    def empty(self) -> bool:
        return not self.tasks


def _observability() -> list[str]:
    return [
        "Observable by probes: " + ", ".join(sorted(OBSERVABLE)),
        "Not observable (kept as declared, never drift): " + ", ".join(NOT_OBSERVABLE),
    ]


def _footer(checklist: Checklist) -> str:
    return (
        f"Probes this run: {checklist.probes}; failed authentications caused: "
        f"{checklist.failed_authentications}"
    )


def render_text(checklist: Checklist) -> str:
    lines = [f"Customers Mail Cloud console: {len(checklist.tasks)} change(s) for a person to make"]
    for task in checklist.tasks:
        lines.append(f"\n{task.number}. {task.kind.value} {terminal(task.api_user)}")
        lines += [f"   {task.number}.{i} {terminal(str(step))}" for i, step in enumerate(task.steps, 1)]
        lines += [f"   console drift: {terminal(d)}" for d in task.drift]
    lines += [f"\nconsole drift: {terminal(d)}" for d in checklist.drift if not _in_tasks(checklist, d)]
    lines += ["", *_observability(), *(terminal(n) for n in checklist.notes), _footer(checklist)]
    if checklist.tasks:
        lines.append(
            "Then: reconciler apply (a guided session at a terminal), or reconciler verify once done."
        )
    return "\n".join(lines) + "\n"


def render_markdown(checklist: Checklist) -> str:
    lines = [MARKER, f"### Customers Mail Cloud console: {len(checklist.tasks)} change(s)", ""]
    for task in checklist.tasks:
        lines.append(f"{task.number}. **{task.kind.value}** {md_code(task.api_user)}")
        lines += [f"   - [ ] {task.number}.{i} {_md_step(step)}" for i, step in enumerate(task.steps, 1)]
        lines += [f"   - console drift: {md_code(d)}" for d in task.drift]
    if checklist.drift:
        lines += ["", "Console drift (from the audit log, with its author):"]
        lines += [f"- {md_code(d)}" for d in checklist.drift]
    lines += ["", *(f"- {line}" for line in _observability()), *(f"- {md_code(n)}" for n in checklist.notes)]
    lines += ["", _footer(checklist), ""]
    return "\n".join(lines)


def to_json(checklist: Checklist) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "backend": "cmc-console",
        "tasks": [t.to_json() for t in checklist.tasks],
        "drift": list(checklist.drift),
        "observable": sorted(OBSERVABLE),
        "not_observable": list(NOT_OBSERVABLE),
        "notes": list(checklist.notes),
        "probes": checklist.probes,
        "failed_authentications": checklist.failed_authentications,
    }


def render_json(checklist: Checklist) -> str:
    return json.dumps(to_json(checklist), indent=2, sort_keys=True) + "\n"


def _md_step(step: Step) -> str:
    # The console's words as text, the value from users/ as code: both escaped for Markdown.
    return md_text(step.action) + (f": {md_code(step.value)}" if step.value is not None else "")


def _in_tasks(checklist: Checklist, line: str) -> bool:
    return any(line.endswith(d) for t in checklist.tasks for d in t.drift)
