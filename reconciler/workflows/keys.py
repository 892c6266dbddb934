"""The keys of a run: resolving the declared keys (RECONCILER_API_KEY is only the reconciler's
own), their keyed fingerprints and the secret behind them, age key-source digests, and the key
material apply sends."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from reconciler.config import Settings
from reconciler.desired import DesiredState
from reconciler.errors import Problem
from reconciler.executor import KeyMaterial, needs_keys
from reconciler.fpsecret import INIT_HINT, load_secret, require_secret
from reconciler.model import KeyRef
from reconciler.plan import KeyInputs, Plan, targeted
from reconciler.secrets import ApiKey, ResolvedKeys, fingerprint, resolve_all

KEY_SOURCE_PREFIX = "age-sha256:"
# As in reconciler.agekeys, which is not imported here: it loads pyrage, needed only to decrypt.
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
OWN_KEY_ENV = "RECONCILER_API_KEY"  # always the key of RECONCILER_API_USER
NO_SECRET_REASON = f"no fingerprint secret, so keys cannot be compared: {INIT_HINT}"


def key_fingerprint_secret(settings: Settings) -> bytes | None:
    """The secret behind keyed fingerprints (reconciler/fpsecret.py), None when there is none:
    never derived from an API key, whose fingerprint would then be checkable offline with nothing
    but a guess of that key."""
    return load_secret(settings)


def resolve_keys(
    desired: DesiredState,
    names: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
) -> ResolvedKeys:
    """Resolve the keys of `names` (default: every declared user), collecting every problem.

    RECONCILER_API_KEY is the key of RECONCILER_API_USER: a file of another user that points at
    it (the admin's file, on a pull request planned with a read-only user) does not get that
    key, so its check is skipped with the reason, and apply refuses instead of setting it."""
    resolved = resolve_all(desired, env=env, names=names)
    return _not_the_own_key_of_another(desired, resolved, settings) if settings is not None else resolved


def _not_the_own_key_of_another(
    desired: DesiredState, resolved: ResolvedKeys, settings: Settings
) -> ResolvedKeys:
    me = (settings.api_user or "").lower()
    foreign = [
        u
        for u in desired.users
        if u.api_key.from_env == OWN_KEY_ENV and u.api_user in resolved.keys and u.api_user.lower() != me
    ]
    if not foreign or not me:
        return resolved
    problems = []
    for user in foreign:
        file = desired.files.get(user.api_user, Path(f"{user.api_user}.yaml"))
        message = (
            f"environment variable {OWN_KEY_ENV} holds the key of {settings.api_user} (the API user "
            "this run authenticates as), not this user's"
        )
        line = desired.line(user.api_user, "api_key.from_env") or desired.line(user.api_user, "api_key")
        problems.append(Problem(str(file), message, line, field="api_key.from_env"))
    names = {u.api_user for u in foreign}
    keys = MappingProxyType({n: k for n, k in resolved.keys.items() if n not in names})
    return ResolvedKeys(keys, (*resolved.missing, *problems), resolved.warnings, resolved.unusable)


def key_inputs(desired: DesiredState, resolved: ResolvedKeys, secret: bytes | None) -> KeyInputs:
    """What the plan compares keys with: fingerprints of the keys read here, the digest of each
    age ciphertext (no identity needed) and, for the others, why their key was not read."""
    fingerprints = fingerprints_of(resolved.keys, secret) if secret is not None and resolved.keys else {}
    sources = {
        u.api_user.lower(): digest
        for u in desired.users
        if u.api_key.age is not None and (digest := key_source(u.api_key.age)) is not None
    }
    unavailable = {name: skip_reason(p, ref) for name, p, ref in _unavailable(desired, resolved)}
    if secret is None:
        unavailable |= {name.lower(): NO_SECRET_REASON for name in resolved.keys}
    return KeyInputs(fingerprints, sources, unavailable)


def _unavailable(desired: DesiredState, resolved: ResolvedKeys) -> list[tuple[str, Problem, KeyRef | None]]:
    """(api_user lowercased, problem, its key reference) for each key not read here."""
    by_file = {str(path): name for name, path in desired.files.items()}
    refs = {u.api_user.lower(): u.api_key for u in desired.users}
    out = []
    for problem in resolved.missing:
        name = by_file.get(problem.file, Path(problem.file).name.removesuffix(".yaml")).lower()
        out.append((name, problem, refs.get(name)))
    return out


def skip_reason(problem: Problem, ref: KeyRef | None = None) -> str:
    """The short reason a plan gives for a key it could not check, and what apply will need."""
    if problem.field == "api_key.age":
        return "no age identity: " + apply_needs(problem, ref)
    return f"{problem.message}: {apply_needs(problem, ref)}"


def apply_needs(problem: Problem, ref: KeyRef | None) -> str:
    """What must be there for apply to succeed, in words a person can act on."""
    if problem.field == "api_key.age" or (ref is not None and ref.age is not None):
        return "apply will fail unless RECONCILER_AGE_IDENTITY or RECONCILER_AGE_IDENTITY_FILE is set"
    if ref is not None and ref.from_env is not None and ref.from_env != OWN_KEY_ENV:
        return f"apply will fail unless {ref.from_env} is set"
    if ref is not None and ref.from_file is not None:
        return f"apply will fail unless the key file {ref.from_file} is there and readable"
    return "apply will fail unless that key is available"


def key_warnings(desired: DesiredState, resolved: ResolvedKeys) -> list[tuple[str, str]]:
    """(api_user lowercased, located warning) per key apply will need and this run could not read."""
    warnings = []
    for name, problem, ref in _unavailable(desired, resolved):
        where = f"{problem.file}:{problem.line}" if problem.line else problem.file
        why = "" if ref is not None and ref.from_env else f" ({problem.message})"
        warnings.append((name, f"{where}: {apply_needs(problem, ref)}{why}"))
    return warnings


def key_source(armored: str) -> str | None:
    """`age-sha256:<hex sha-256 of the armored ciphertext>` (the `reconciler/key-source`
    annotation), over the armor as normalised for decryption, so re-indenting the YAML block is
    not a change. None when it is not armored age data (validate reports that)."""
    lines = [line.strip() for line in armored.strip().splitlines() if line.strip()]
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        return None
    text = "\n".join(lines) + "\n"
    return KEY_SOURCE_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def targeted_names(desired: DesiredState, targets: tuple[str, ...]) -> list[str] | None:
    """The declared users a --target run is about (None: all), matched like the plan matches."""
    return [u.api_user for u in desired.users if targeted(u.api_user, targets)] if targets else None


def fingerprints_of(keys: Mapping[str, ApiKey], secret: bytes) -> dict[str, str]:
    """Keyed fingerprints by api_user lowercased, the way the plan matches users. Each ends with
    the id of the secret that made it, so a plan can tell "the secret changed" (e.g. the
    reconciler's own key was rotated) from "the declared key changed"."""
    sid = hmac.new(secret, b"reconciler fingerprint secret id", hashlib.sha256).hexdigest()[:8]
    return {name.lower(): f"{fingerprint(key, secret)};sid={sid}" for name, key in keys.items()}


def key_material(
    plan: Plan, resolved: ResolvedKeys, settings: Settings, desired: DesiredState
) -> KeyMaterial:
    """The keys the plan must send, from the keys already resolved for the run, with what to
    record beside each. The caller has made sure none is missing (`resolved.raise_if_missing()`):
    nothing is applied otherwise."""
    needed = set(needs_keys(plan))
    keys = {name.lower(): key for name, key in resolved.keys.items() if name.lower() in needed}
    fingerprints = fingerprints_of(keys, require_secret(settings)) if keys else {}
    return KeyMaterial(keys, fingerprints, key_sources(desired, needed))


def key_sources(desired: DesiredState, names: set[str]) -> dict[str, str | None]:
    """The key-source annotation to record with each key set: the age digest, or None (remove a
    stale one) for a key that is not age-encrypted any more."""
    ciphertexts = {u.api_user.lower(): u.api_key.age for u in desired.users}
    return {name: key_source(ciphertexts[name] or "") for name in names if name in ciphertexts}
