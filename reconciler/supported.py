"""What of users/ a backend can hold: the plan reads the backend's `Capabilities` (pure, no I/O).

- A declared field the backend cannot store is a refusal naming file:line and the backend
  (`unsupported_fields: note` in the settings makes it a plan note, and the field is left out).
- A declared field with a `fixed` value (Mailgun: every credential is an SMTP login) is allowed
  only with exactly that value, and is never sent.
- A stored field the backend cannot read back is not compared: reported once as not observable,
  never as drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.capabilities import ALL_FIELDS, Capabilities
from reconciler.desired import DesiredState
from reconciler.model import UserSpec
from reconciler.plan import declared_paths


@dataclass(frozen=True)
class Fit:
    refusals: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    compared: frozenset[str] = ALL_FIELDS  # paths the diff compares
    sent: frozenset[str] = ALL_FIELDS  # paths a create or update may carry


def fit(
    desired: DesiredState, capabilities: Capabilities, backend: str, *, unsupported: str = "refuse"
) -> Fit:
    """How users/ fits `backend`. `unsupported` is the setting unsupported_fields (refuse | note)."""
    stored, observable = capabilities.fields, capabilities.observable_fields()
    if stored >= ALL_FIELDS and observable >= ALL_FIELDS:
        return Fit()  # every field a file can declare is stored and observable: nothing to check
    refusals: list[str] = []
    notes: list[str] = []
    unobserved: set[str] = set()
    for spec in desired.users:
        for path in declared_paths(spec):
            if path in stored:
                if path not in observable:
                    unobserved.add(path)
                continue
            where = _where(desired, spec.api_user, path)
            if path in capabilities.fixed:
                refusals += _fixed(spec, path, capabilities.fixed[path], where, backend)
            elif unsupported == "note":
                notes.append(f"{where}: {path} is not stored by the {backend} backend; left out of the plan")
            else:
                refusals.append(
                    f"{where}: {path}: the {backend} backend cannot store this field (remove it, or set "
                    "unsupported_fields: note to plan without it)"
                )
    if unobserved:
        notes.append(
            f"Not observable on the {backend} backend, so never reported as drift: "
            + ", ".join(sorted(unobserved))
        )
    compared = frozenset(stored & observable)
    return Fit(tuple(refusals), tuple(notes), compared, frozenset(stored))


def _fixed(spec: UserSpec, path: str, value: object, where: str, backend: str) -> list[str]:
    if _value(spec, path) == value:
        return []
    return [f"{where}: {path}: the {backend} backend only supports {path}: {json.dumps(value)}"]


def _value(spec: UserSpec, path: str) -> object:
    obj: object = spec
    for part in path.split("."):
        obj = getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


def _where(desired: DesiredState, api_user: str, path: str) -> str:
    file = desired.files.get(api_user, Path(f"{api_user}.yaml"))
    line = desired.line(api_user, path) or desired.line(api_user, path.split(".", maxsplit=1)[0])
    return f"{file}:{line}" if line else str(file)
