"""The conformance kit every backend's tests inherit (docs/backends.md)."""
