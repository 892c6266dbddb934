"""Presentation helpers shared by `render` and `reconcile`: the mail report as JSON and a hasher
that drives a progress line."""

from __future__ import annotations

from typing import Any

from reconciler.cli.progress import Progress
from reconciler.mail import MailReport
from reconciler.mail.hashing import Hasher, make_hasher
from reconciler.output import OUTPUT_FORMAT_VERSION
from reconciler.secrets import ApiKey


class _ProgressHasher:
    """A real hasher that advances a progress line per key hashed (the slow part of a render)."""

    def __init__(self, inner: Hasher, bar: Progress) -> None:
        self.inner, self.bar = inner, bar

    @property
    def scheme(self) -> str:
        return self.inner.scheme

    def __call__(self, key: ApiKey) -> str:
        hashed = self.inner(key)
        self.bar.advance()
        return hashed


def progress_hasher(scheme: str, bar: Progress) -> Hasher:
    return _ProgressHasher(make_hasher(scheme), bar)


def mail_report_json(report: MailReport, *, ok: bool) -> dict[str, Any]:
    """`render --format json`, and the `mail` part of `reconcile --format json` (docs/cli-json.md)."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "ok": ok,
        **mail_fields_json(report),
    }


def mail_fields_json(report: MailReport) -> dict[str, Any]:
    return {
        "mail_dir": str(report.mail_dir),
        "check": report.check,
        "changed": list(report.changed),
        "reloaded": list(report.reloaded),
        "smoke": list(report.smoke),
        "hashes": report.hashes,
        "users": report.users,
        "checks_skipped": list(report.skipped),
        "warnings": list(report.warnings),
    }
