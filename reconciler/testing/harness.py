"""What a backend's test module gives the conformance kit: connections to one fresh account, and
the faults its test double can inject. A fault the harness cannot inject returns False, and the
kit skips the cases that need it, naming the reason (never a silent pass)."""

from __future__ import annotations

from reconciler.backend.base import Backend


class Harness:
    """Subclass it in the backend's tests; override `open` and whichever faults the backend's test
    double (an embedded service, a recorded API, a fake server on loopback) can produce."""

    page_size: int | None = None
    """Users per page of the backend's listing; None: it does not page (the paging case is skipped)."""

    def open(self, *, deadline: float | None = None) -> Backend:
        """A new connection to this harness's account, authenticated as its admin. `deadline`:
        the seconds one change may spend retrying (None: the backend's default)."""
        raise NotImplementedError

    def lose_next_answer(self, api_user: str) -> bool:
        """The next write to `api_user` is applied and its answer lost (the connection is cut)."""
        return False

    def throttle_next(self, count: int, retry_after: int) -> bool:
        """The next `count` requests are refused as "too many requests" with `Retry-After`."""
        return False

    def unavailable_next(self, count: int) -> bool:
        """The next `count` requests are refused as unavailable, before anything is done."""
        return False

    def close(self) -> None:
        """Stop whatever `open` needed (a server, temp files)."""
