"""The embedded service: a stand-in for the email service's API-users endpoint (HTTP API over a
SQLite store, the SMTP relay, fault injection), the way LocalStack stands in for a cloud. Its own
distribution (reconciler_service/pyproject.toml, command `reconciler-service`): it never imports the
tool, and the tool only talks to it over HTTP (the contract: docs/contract.md)."""

__version__ = "0.1.0"
