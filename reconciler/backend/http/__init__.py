"""The `http-v2` backend: the project's own HTTP contract (docs/contract.md, openapi.json), as the
embedded service implements it. `client.py` is the transport; `backend.py` adapts it to the seam."""

from reconciler.backend.http.backend import FACTORY, HttpBackend

__all__ = ["FACTORY", "HttpBackend"]
