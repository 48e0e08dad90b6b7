"""The client-side rate limiter every HTTP attempt of the async client waits for.

It sits below hooks and triggers: :class:`~airflow_provider_oes.hooks.async_client.OESAsyncClient` talks to
it through the :class:`RequestGate` protocol, and the shared poller
(:mod:`airflow_provider_oes.triggers._poller`) creates one per connection and event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_oes.exceptions import OESInvalidRequestError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateLimiter", "RequestGate", "RequestTicket"]


class RequestGate(Protocol):
    """What the async client needs of a rate limiter (implemented by :class:`RateLimiter`)."""

    async def acquire(self) -> Any:
        """Wait until one more request may be sent; return a ticket for :meth:`release`."""

    def release(self, ticket: Any) -> None:
        """The request of ``ticket`` is over (answered or failed)."""

    def penalize(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (the API answered 429)."""


@dataclass(slots=True)
class RequestTicket:
    """One request counted in the limiter's window.

    :param counted_from: Clock time from which the request counts in the window: when it was sent, moved to
        when its answer came back by :meth:`RateLimiter.release`.
    """

    counted_from: float


class RateLimiter:
    """At most ``max_requests`` requests in any ``period`` seconds, paced evenly, plus 429 back-off.

    Two rules, both must allow a request:

    * a sliding window (the hard guarantee): never more than ``max_requests`` in any ``period``. A request
      stays in the window from when it is sent until ``period`` after its answer came back (see
      :meth:`release`), so that however the network delays each request, BitGo cannot see more than
      ``max_requests`` arrive within ``period``;
    * a token bucket refilled at ``max_requests / period`` per second holding at most ``burst`` tokens
      (the pacing): a big sweep is spread over the window instead of spending the whole window's budget
      in its first seconds and then starving every trigger until the window slides on.

    Waiters are served first come, first served (an :class:`asyncio.Lock` is FIFO).

    :param max_requests: Requests allowed per window.
    :param period: Window length in seconds.
    :param burst: Requests that may go back to back; default a tenth of ``max_requests`` (36 of 360).
    :param clock: Monotonic clock (replaceable in tests).
    """

    def __init__(
        self,
        max_requests: int,
        period: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or period <= 0:
            raise OESInvalidRequestError(
                f"the rate limit must allow at least 1 request per positive period, got {max_requests} per {period} s"
            )
        self.max_requests = max_requests
        self.period = period
        self.burst = max(1, min(max_requests, burst if burst is not None else max_requests // 10))
        self._rate = max_requests / period
        self._clock = clock
        self._sent: deque[RequestTicket] = deque()  # in sending order
        self._tokens = float(self.burst)
        self._refilled_at = clock()
        self._blocked_until = 0.0
        self._lock: asyncio.Lock | None = None
        self.waited_seconds = 0.0
        """Total time requests spent waiting for the limiter (for the benchmark and logs)."""

    def penalize(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` from now (the API answered 429).

        :param seconds: How long to pause the connection.
        """
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    def _wait_needed(self, now: float) -> float:
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        while self._sent and self._sent[0].counted_from <= now - self.period:
            self._sent.popleft()
        wait = self._blocked_until - now
        if self._tokens < 1:
            wait = max(wait, (1 - self._tokens) / self._rate)
        if len(self._sent) >= self.max_requests:
            wait = max(wait, self._sent[0].counted_from + self.period - now)
        return wait

    async def acquire(self) -> RequestTicket:
        """Wait until one more request is allowed, then count it as sent; return its ticket for :meth:`release`."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    break
                self.waited_seconds += wait
                await asyncio.sleep(wait)
            self._tokens -= 1
            ticket = RequestTicket(now)
            self._sent.append(ticket)
            return ticket

    def in_window(self) -> int:
        """Requests that count in the window now: sent, or answered, within the last ``period`` seconds.

        For the ``oes.rate_limit.in_window`` gauge: how close the connection runs to its limit.
        """
        cutoff = self._clock() - self.period
        # Counted one by one: release() moves a slow request's time forward, so the queue is not sorted by it.
        return sum(1 for ticket in self._sent if ticket.counted_from > cutoff)

    def release(self, ticket: RequestTicket) -> None:
        """The request of ``ticket`` got its answer (or failed): its window now starts at this moment.

        :param ticket: What :meth:`acquire` returned.
        """
        ticket.counted_from = max(ticket.counted_from, self._clock())
