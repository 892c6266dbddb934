"""What the gateway should serve after an apply: what the service actually has (pure).

`reconcile` applies to the service and then renders. When the service refused a user's change (a
500 on a key change, a failed create or unlock), rendering the desired state would give the gateway
a key or a login the service's relay does not know: that user's mail would be refused until a
later apply succeeds. So a user whose change did not succeed keeps the lines this gateway served
before the run (none, when it served none), and every other user is rendered as desired: a lock or
delete that succeeded removes the user's lines.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.model import UserSpec
from reconciler.secrets import ApiKey


@dataclass(frozen=True)
class Served:
    """One login's lines on the gateway now, read back from sasl_passwd: its senders and key."""

    login: str  # as written in the file (the passwd-file line uses the same spelling)
    senders: tuple[str, ...]
    key: ApiKey = field(repr=False)


@dataclass(frozen=True)
class MailView:
    users: tuple[UserSpec, ...]
    keys: Mapping[str, ApiKey] = field(repr=False)
    kept: tuple[str, ...] = ()  # not applied, still served as before
    left_out: tuple[str, ...] = ()  # not applied, not served before: no lines


def accepted_view(
    users: Sequence[UserSpec],
    keys: Mapping[str, ApiKey],
    not_applied: Collection[str],
    served: Mapping[str, Served],
) -> MailView:
    """`not_applied`: api_users (any case) whose change failed or was skipped. `served`: the
    gateway's lines before the run, by api_user in lower case."""
    failed = {name.lower() for name in not_applied}
    if not failed:
        return MailView(tuple(users), keys)
    view_users = [u for u in users if u.api_user.lower() not in failed]
    view_keys = {name: key for name, key in keys.items() if name.lower() not in failed}
    kept, left_out = [], []
    for name in sorted(failed):
        before = served.get(name)
        if before is None:
            left_out.append(name)
            continue
        view_users.append(_serving(before.login, before.senders))
        view_keys[before.login] = before.key
        kept.append(name)
    return MailView(tuple(view_users), view_keys, tuple(kept), tuple(left_out))


def _serving(api_user: str, senders: Sequence[str]) -> UserSpec:
    # Only what the render reads matters (name, SMTP access, lock, senders); the key reference is
    # never resolved, the key comes from `served`.
    return UserSpec.model_validate(
        {
            "api_user": api_user,
            "api_key": {"from_env": "RECONCILER_UNUSED"},
            "role": "normal",
            "access": {"smtp": True},
            "smtp_senders": list(senders),
        }
    )
