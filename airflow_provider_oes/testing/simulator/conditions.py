"""
The Python scripting API for the server's conditions: faults, the rate limit, the clock, tokens, a
refusing list endpoint, what the server has seen, and reset.

:class:`OESSimulator` inherits these methods; :class:`OESSimulatorClient` offers the same ones over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes.testing.simulator.faults import Fault
from airflow_provider_oes.testing.simulator.rate_limit import max_in_window

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator.state import State


class ServerConditions:
    """Server-condition scripting over a :class:`State` (``self._state``)."""

    _state: State

    @property
    def token(self) -> str:
        """The bearer token the API accepts."""
        return self._state.token

    @property
    def enterprise_id(self) -> str:
        """The default enterprise id."""
        return self._state.enterprise_id

    # ------------------------------------------------------------------ what the server saw
    @property
    def request_count(self) -> int:
        """Number of API requests served (control-API requests are not counted)."""
        with self._state.lock:
            return len(self._state.requests)

    @property
    def requests(self) -> list[tuple[str, str, str, float]]:
        """A copy of the API requests served: ``(method, path, query_string, time.monotonic())``."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def enterprise_id_headers(self) -> list[str | None]:
        """The ``enterprise-id`` header of each API request in :attr:`requests` (None when absent)."""
        with self._state.lock:
            return list(self._state.enterprise_headers)

    def reset_counts(self) -> None:
        """Forget the API requests served so far (and the rate limit's per-token record)."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.enterprise_headers.clear()
        self._state.rate_limit.reset()

    def reset(self) -> None:
        """Forget allocations, scheduled flips, faults, counts, added memberships and tokens; restore the
        clock offset and rate limit given at construction and an answering list endpoint."""
        self._state.reset()

    # ------------------------------------------------------------------ faults
    @property
    def faults(self) -> list[dict[str, Any]]:
        """The queued faults, first to be consumed first."""
        return self._state.faults.as_dicts()

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        allocation_id: str | None = None,
        retry_after: float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """
        Queue a fault for the next ``count`` matching API requests.

        :param kind: one of :data:`FAULT_KINDS`.
        :param count: number of requests it applies to (>= 1).
        :param allocation_id: only requests for this allocation; None matches any request.
        :param retry_after: ``Retry-After`` header value for ``429`` (no header when None).
        :param delay: seconds to wait for ``slow`` (default 1.0).
        """
        self._state.faults.add(Fault.checked(kind, count, allocation_id, retry_after, delay))

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        self._state.faults.clear()

    # ------------------------------------------------------------------ rate limit
    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """The per-token limit as ``(requests, window seconds)``, or None when unlimited."""
        limit = self._state.rate_limit.limit
        return None if limit is None else (limit, self._state.rate_limit.window)

    def set_rate_limit(self, limit: int | None, window: float = 60.0) -> None:
        """
        Limit each access token to ``limit`` requests in any sliding window of ``window`` seconds, across
        every client; beyond it the API answers 429 with ``Retry-After`` (whole seconds).

        :param limit: requests allowed per window; None removes the limit.
        :param window: the window in seconds.
        """
        self._state.rate_limit.configure(limit, window)

    def token_requests(self, token: str | None = None) -> list[tuple[float, bool]]:
        """
        Every API request presenting ``token``: ``(time.monotonic() in the server, admitted)``.

        :param token: an accepted token (default: the simulator's).
        """
        return self._state.rate_limit.seen(token or self.token)

    def max_requests_in_window(self, token: str | None = None, window: float = 60.0, admitted: bool = False) -> int:
        """
        The most requests of ``token`` the server received in any sliding window of ``window`` seconds.

        :param token: an accepted token (default: the simulator's).
        :param window: window length in seconds.
        :param admitted: count only the requests the limit admitted (default: every request received).
        """
        times = [t for t, ok in self.token_requests(token) if ok or not admitted]
        return max_in_window(times, window)

    def add_token(self, token: str) -> None:
        """
        Accept another access token (another user of the same enterprises), with its own rate limit.

        :param token: the bearer token to accept.
        """
        if not token:
            raise ValueError("token must not be empty")
        with self._state.lock:
            self._state.tokens.add(token)

    # ------------------------------------------------------------------ clock
    @property
    def clock_offset(self) -> float:
        """Seconds the simulator's clock runs ahead of this machine's (negative: behind)."""
        return self._state.clock.offset

    def set_clock_offset(self, seconds: float) -> None:
        """
        Skew the simulator's clock against its clients': every later ``createdAt``, ``updatedAt`` and
        ``Date`` header is the machine's time plus ``seconds``.

        :param seconds: the offset; positive runs ahead.
        """
        self._state.set_clock_offset(seconds)

    # ------------------------------------------------------------------ a refusing list endpoint
    def reject_list(self, status: int | None = 404, feed_only: bool = False) -> None:
        """
        Make the list endpoint refuse: every list request (``feed_only=False``, before auth, as for a
        route the server does not have) or only the feed query (any ``sortField=updatedAt``, after
        validation, as a server that cannot sort by update time). The single GET keeps answering.

        :param status: the HTTP status to answer (400 and 404 carry BitGo-shaped bodies); None answers again.
        :param feed_only: refuse only the feed query.
        """
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {status!r}")
        with self._state.lock:
            self._state.list_rejection = None if status is None else (int(status), feed_only)

    def reject_feed(self, status: int | None = 400) -> None:
        """
        Make the list endpoint refuse the feed query (``sortField=updatedAt``); other list queries answer.

        :param status: 400 or 404 (or another error status); None answers again.
        """
        self.reject_list(status, feed_only=True)
