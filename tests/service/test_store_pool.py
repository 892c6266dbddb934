"""The store reuses SQLite connections: the server runs every HTTP connection on a new thread, and
one handle per thread would leak a file descriptor per request."""

from __future__ import annotations

from tests.fixtures.service import RunningService


def test_many_requests_reuse_a_few_sqlite_connections(service: RunningService) -> None:
    with service.client() as client:
        for _ in range(200):
            client.get_user(service.admin_user)
    assert len(service.embedded.store._all) <= 4
