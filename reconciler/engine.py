"""Glue between the pure core and the gateways: load what a command needs, compute a plan.

Each step takes its gateway (users dir, client, environment) as an argument, so the CLI stays a
few lines per command and tests can drive the same functions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from reconciler.apply import KeyMaterial, needs_keys
from reconciler.config import Settings, service_api_key
from reconciler.desired import DesiredState
from reconciler.errors import ReconcilerError, StalePlan, UnsafePlan
from reconciler.model import LiveUser
from reconciler.plan import Guards, Plan, make_plan, targeted
from reconciler.secrets import ApiKey, ResolvedKeys, fingerprint, resolve_all


def fingerprint_secret(settings: Settings) -> bytes:
    """The secret behind keyed fingerprints: RECONCILER_FINGERPRINT_SECRET, or else derived from
    the reconciler's own API key, which CI holds anyway and a pull request from a fork does not."""
    if settings.fingerprint_secret is not None:
        return settings.fingerprint_secret.get_secret_value().encode()
    api_key = service_api_key(settings)
    if api_key is None:
        raise ReconcilerError(
            "no fingerprint secret: set RECONCILER_API_KEY or RECONCILER_FINGERPRINT_SECRET"
        )
    own_key = api_key.get_secret_value().encode()
    return hmac.new(own_key, b"reconciler key fingerprint v1", hashlib.sha256).digest()


def resolve_keys(
    desired: DesiredState, names: Iterable[str] | None = None, env: Mapping[str, str] | None = None
) -> ResolvedKeys:
    """Resolve the keys of `names` (default: every declared user), collecting every problem."""
    return resolve_all(desired, env=env, names=names)


def targeted_names(desired: DesiredState, targets: tuple[str, ...]) -> list[str] | None:
    """The declared users a --target run is about (None: all), matched like the plan matches."""
    return [u.api_user for u in desired.users if targeted(u.api_user, targets)] if targets else None


def fingerprints_of(keys: Mapping[str, ApiKey], secret: bytes) -> dict[str, str]:
    """Keyed fingerprints by api_user lowercased, the way the plan matches users. Each ends with
    the id of the secret that made it, so a plan can tell "the secret changed" (e.g. the
    reconciler's own key was rotated) from "the declared key changed"."""
    sid = hmac.new(secret, b"reconciler fingerprint secret id", hashlib.sha256).hexdigest()[:8]
    return {name.lower(): f"{fingerprint(key, secret)};sid={sid}" for name, key in keys.items()}


def guards_from(
    settings: Settings, allow_deletes: int | None = None, allow_locks: int | None = None
) -> Guards:
    return Guards(
        max_deletes=settings.max_deletes,
        max_change_percent=settings.max_change_percent,
        allow_deletes=allow_deletes,
        allow_locks=allow_locks,
        self_user=settings.api_user,
    )


def compute_plan(
    desired: DesiredState,
    live: list[LiveUser],
    resolved: ResolvedKeys,
    *,
    settings: Settings,
    guards: Guards,
    targets: tuple[str, ...] = (),
) -> Plan:
    """The plan; key checks are skipped for users whose keys are not available here."""
    fingerprints = fingerprints_of(resolved.keys, fingerprint_secret(settings)) if resolved.keys else None
    plan = make_plan(
        desired.users,
        live,
        desired_digest=desired.digest,
        fingerprints=fingerprints,
        guards=guards,
        targets=targets,
    )
    if fingerprints is not None and resolved.missing:
        names = ", ".join(sorted(Path(p.file).stem for p in resolved.missing))
        plan = replace(
            plan,
            notes=(*plan.notes, f"Key checks were skipped for users whose key is not available: {names}."),
        )
    return plan


def key_material(plan: Plan, resolved: ResolvedKeys, settings: Settings) -> KeyMaterial:
    """The keys the plan must send, from the keys already resolved for the run. The caller has
    made sure none is missing (`resolved.raise_if_missing()`): nothing is applied otherwise."""
    needed = set(needs_keys(plan))
    keys = {name.lower(): key for name, key in resolved.keys.items() if name.lower() in needed}
    return KeyMaterial(keys, fingerprints_of(keys, fingerprint_secret(settings)))


def check_not_stale(saved: Plan, fresh: Plan) -> None:
    """A saved plan is applied only if neither the desired files nor the live users moved."""
    moved: list[str] = []
    if saved.desired_digest != fresh.desired_digest:
        moved.append("the files in users/ changed")
    before, after = saved.live_versions, fresh.live_versions
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        moved.append(f"live users changed since the plan: {shown}")
    if moved:
        raise StalePlan("the saved plan is stale: " + "; ".join(moved) + ". Run `reconciler plan` again.")


def refuse_missing_users_dir(users_dir: Path) -> None:
    if not users_dir.is_dir():
        raise UnsafePlan(
            f"the users directory {users_dir} does not exist: refusing to treat it as 'no users' "
            "(which would delete everyone on the service)"
        )
