"""What the probes should see for a declared user, and what a difference means (pure).

A locked user refuses both channels, so does a wrong key or a missing user: a refusal alone does not
tell them apart. Verification therefore asks "is what the probes saw consistent with the
declaration?", and says so when nothing about a user can be seen (no HTTP-API, no SMTP).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.backend.cmc.transport import ProbeResult, Seen
from reconciler.model import UserSpec

_MEANING = {
    ("smtp", Seen.OK): "authenticated on the relay (exists, key right, SMTP checked, unlocked)",
    ("smtp", Seen.REFUSED): "refused on the relay (absent, wrong key, SMTP unchecked or locked)",
    ("http_api", Seen.OK): "authenticated on the API as an API group Admin",
    ("http_api", Seen.NOT_ADMIN): "authenticated on the API as a Normal user",
    ("http_api", Seen.REFUSED): "refused on the API (absent, wrong key, HTTP-API unchecked or locked)",
}


def expected(user: UserSpec, channel: str) -> Seen:
    if user.locked:
        return Seen.REFUSED
    if channel == "smtp":
        return Seen.OK if user.access.smtp else Seen.REFUSED
    if not user.access.http_api:
        return Seen.REFUSED
    return Seen.OK if user.role == "admin" else Seen.NOT_ADMIN


def observable(user: UserSpec) -> bool:
    """False when every probe must be refused whatever the console says (locked is declared, or
    neither access): then a refusal proves nothing about the key."""
    return not user.locked and (user.access.smtp or user.access.http_api)


def mismatches(user: UserSpec, results: Iterable[ProbeResult]) -> list[str]:
    """One line per probe that saw something else than the declaration implies."""
    found = []
    for result in results:
        want = expected(user, result.channel)
        if result.seen is not want:
            found.append(
                f"{user.api_user}: expected {_MEANING[(result.channel, want)]}, "
                f"but it was {_MEANING[(result.channel, result.seen)]} [{result.detail}]"
            )
    return found
