"""Saved plans (`plan --out`, `apply PLAN.json`, `show PLAN.json`): read one back, and apply it
only exactly: refused when the desired files or the live users moved since it was made."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from reconciler.errors import ReconcilerError, StalePlan
from reconciler.output import plan_from_json
from reconciler.plan import Plan


def load_saved_plan(path: Path) -> Plan:
    try:
        return plan_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReconcilerError(f"{path} is not a saved plan: {type(exc).__name__}: {exc}") from None


def check_saved(saved: Plan, fresh: Plan) -> None:
    """A saved plan is applied exactly: refuse when the state moved, or when the same inputs now
    give other changes (the plan was made with other options, such as --target)."""
    check_not_stale(saved, fresh)
    if saved.changes != fresh.changes:
        raise StalePlan(
            "the saved plan does not match what apply would do now (was it made with other options, "
            "such as --target?). Run `reconciler plan --out` again with the options you apply with."
        )


def with_saved_versions(saved: Plan, fresh: Plan) -> Plan:
    """Writes carry the versions the saved plan saw (check_saved made sure the changes agree)."""
    pairs = zip(saved.changes, fresh.changes, strict=True)
    return replace(fresh, changes=tuple(replace(f, version=s.version or f.version) for s, f in pairs))


def check_not_stale(saved: Plan, fresh: Plan) -> None:
    """A saved plan is applied only if neither the desired files nor the live users moved."""
    moved: list[str] = []
    if saved.desired_digest != fresh.desired_digest:
        users = _replanned(saved, fresh)
        moved.append(
            f"the files in users/ changed; the plan now differs for {_names(users)}"
            if users
            else "the files in users/ changed (the same changes would be planned: a comment or formatting)"
        )
    before, after = saved.live_versions, fresh.live_versions
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    if changed:
        moved.append(f"live users changed since the plan: {_names(changed)}")
    if moved:
        raise StalePlan("the saved plan is stale: " + "; ".join(moved) + ". Run `reconciler plan` again.")


def _replanned(saved: Plan, fresh: Plan) -> list[str]:
    """The users whose planned change is not the same any more (versions are compared apart)."""
    before = {c.api_user.lower(): c for c in saved.changes}
    after = {c.api_user.lower(): c for c in fresh.changes}
    return sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))


def _names(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
