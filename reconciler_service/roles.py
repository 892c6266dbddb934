"""Who may read and write what (docs/contract.md, "Roles"), following the console's meanings:

- `role: admin` manages API users: it reads and writes everything.
- Operation Authorization (`operation: true`) means "may view data that includes email addresses",
  so a `normal` user with it may list every user and read the operation log, the leases and the
  gateway reports; the pull request's plan credential is declared that way.
- A `normal` user without it, or one with "only refer to this user's own data"
  (`access.own_data_only`), sees only its own data: itself and the operations it made.
- The keyed key fingerprint is for admins only: a reader could test guesses of a key against it
  offline. The age key-source digest stays visible (its ciphertext is in git anyway).
- A gateway report is written by an admin, or by the API user an admin bound to that gateway with
  the annotation `reconciler/gateway: <name>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINGERPRINT_ANNOTATION = "reconciler/key-fingerprint"
GATEWAY_ANNOTATION = "reconciler/gateway"
# One name: the list endpoint leaves it out in SQL (Store.page_json), and a test pins that both agree.
ADMIN_ONLY_ANNOTATIONS = frozenset({FINGERPRINT_ANNOTATION})


@dataclass(frozen=True)
class Caller:
    """The authenticated API user and what its attributes allow."""

    api_user: str
    admin: bool = False
    operation: bool = False
    own_data_only: bool = False
    gateway: str | None = None  # the gateway this user may report for (GATEWAY_ANNOTATION)

    @classmethod
    def of(cls, api_user: str, attributes: dict[str, Any], annotations: dict[str, str]) -> Caller:
        return cls(
            api_user=api_user,
            admin=attributes.get("role") == "admin",
            operation=bool(attributes.get("operation")),
            own_data_only=bool(attributes.get("access", {}).get("own_data_only")),
            gateway=annotations.get(GATEWAY_ANNOTATION) or None,
        )

    @property
    def reads_all(self) -> bool:
        """May see every API user, the whole operation log, the leases and every gateway report.
        Admins always do: they manage every user, so `own_data_only` limits only normal users."""
        return self.admin or (self.operation and not self.own_data_only)

    def sees_user(self, api_user: str) -> bool:
        return self.reads_all or api_user.lower() == self.api_user.lower()

    def may_report(self, gateway: str) -> bool:
        return self.admin or self.gateway == gateway

    def sees_gateway(self, gateway: str) -> bool:
        return self.reads_all or self.gateway == gateway


def visible(caller: Caller, user: dict[str, Any]) -> dict[str, Any]:
    """A user object as `caller` may see it: without the admin-only annotations for non-admins."""
    if caller.admin:
        return user
    notes = user.get("annotations") or {}
    return {**user, "annotations": {k: v for k, v in notes.items() if k not in ADMIN_ONLY_ANNOTATIONS}}
