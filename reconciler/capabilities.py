"""What a backend can do, as data (octoDNS's SUPPORTS): the core reads it to decide, never probes.
Pure, so the plan can read it; reconciler/backend/base.py re-exports it as part of the seam."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The declared paths of a user file a backend may store (UserSpec's fields, dotted for `access`).
ALL_FIELDS = frozenset(
    {
        "role",
        "operation",
        "access.http_api",
        "access.smtp",
        "access.own_data_only",
        "timezone",
        "locked",
        "smtp_senders",
        "description",
    }
)


class KeyUpdate(StrEnum):
    IN_PLACE = "in_place"  # the key of an existing user can be changed
    REPLACE = "replace"  # a new key means deleting and re-creating the user


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared once (a backend that must ask the service does it inside
    itself, at most once per run)."""

    fields: frozenset[str] = ALL_FIELDS
    """Declared paths the backend stores. A declared path outside it is refused (file:line)."""
    observable: frozenset[str] | None = None
    """Paths the backend can read back; None = all of `fields`. Stored but unobservable paths are
    reported as not observable, never as drift (a console backend)."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Paths the backend does not store but whose value is fixed (Mailgun: every credential is an
    SMTP login). Declaring one with exactly this value is allowed; anything else is refused."""
    key_update: KeyUpdate = KeyUpdate.IN_PLACE
    key_reuse_refused: bool = False
    """Setting the key a user already has is refused by the service (Mailgun); the backend treats
    that refusal as success, the plan needs to know so it never sends a same-key write."""
    can_list: bool = True
    """False: the set of users comes from the state store (what the repository declared)."""
    can_write: bool = True
    """False: a person applies the plan (a console backend); apply becomes a guided session."""
    conditional_writes: bool = False
    leases: bool = False
    operation_log: bool = False
    gateway_reports: bool = False
    annotations: bool = False
    """Per-user string annotations (fingerprints); without them they go to the state store."""
    locks: bool = True
    """The service can lock a user. A backend may emulate it (Mailgun: lock by deleting)."""

    def observable_fields(self) -> frozenset[str]:
        return self.fields if self.observable is None else self.observable

    def unsupported(self, declared: Mapping[str, Any]) -> list[str]:
        """The declared paths (path -> declared value) this backend cannot store: outside
        `fields`, unless fixed to exactly the declared value. Sorted, for stable messages."""
        return sorted(
            path
            for path, value in declared.items()
            if path not in self.fields and not (path in self.fixed and self.fixed[path] == value)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": sorted(self.fields),
            "observable": sorted(self.observable_fields()),
            "fixed": dict(sorted(self.fixed.items())),
            "key_update": self.key_update.value,
            "key_reuse_refused": self.key_reuse_refused,
            "can_list": self.can_list,
            "can_write": self.can_write,
            "conditional_writes": self.conditional_writes,
            "leases": self.leases,
            "operation_log": self.operation_log,
            "gateway_reports": self.gateway_reports,
            "annotations": self.annotations,
            "locks": self.locks,
        }
