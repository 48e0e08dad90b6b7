"""The client-side rate limiter every HTTP attempt of the async client waits for.

It sits below hooks and triggers: :class:`~airflow_provider_oes.hooks.async_client.OESAsyncClient` talks to
it through the :class:`RequestGate` protocol, and the shared poller
(:mod:`airflow_provider_oes.triggers._shared.connections`) creates one per connection and event loop.

BitGo counts 360 requests per 60 s per user, across every process using that user's token. Each process
only knows its own requests, so the limiter adapts when the API answers 429 (see :class:`AdaptiveLimit`):
N triggerers sharing one token settle under the token's limit without dividing it by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from airflow_provider_oes.exceptions import OESInvalidRequestError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AdaptiveLimit", "LimiterStats", "RateLimiter", "RequestGate", "RequestTicket"]


class LimiterStats(NamedTuple):
    """What the rate-limit gauges report of a limiter."""

    in_window: int
    """Requests that count in the window now."""
    limit: int
    """Requests the window allows (the ceiling)."""
    rate: float
    """The adaptive allowance now, in requests per window (lowered by 429s)."""


class RequestGate(Protocol):
    """What the async client needs of a rate limiter (implemented by :class:`RateLimiter`)."""

    async def acquire(self) -> Any:
        """Wait until one more request may be sent; return a ticket for :meth:`release`."""

    def release(self, ticket: Any) -> None:
        """The request of ``ticket`` is over (answered or failed)."""

    def penalize(self, seconds: float, ticket: Any = None) -> None:
        """Hold every request back for ``seconds``: the API answered 429 to the request of ``ticket``."""


@dataclass(slots=True)
class RequestTicket:
    """One request counted in the limiter's window.

    :param counted_from: Clock time from which the request counts in the window: when it was sent, moved to
        when its answer came back by :meth:`RateLimiter.release`.
    :param sent_at: Clock time when the request was let through (never moved).
    :param answered: Its answer came back (:meth:`RateLimiter.release`).
    :param throttled: The answer was 429 (:meth:`RateLimiter.penalize`).
    """

    counted_from: float
    sent_at: float = 0.0
    answered: bool = False
    throttled: bool = False


class AdaptiveLimit:
    """How many requests per period this process may send now: AIMD on the API's 429 answers.

    The static limit (``ceiling``, the connection's ``rate_limit_requests``) is never exceeded. Below it:

    * **multiplicative decrease**: a 429 means the token's window on BitGo's side is full, so the requests
      of this process that BitGo admitted in the last period (``usage``) are its share of that full window. The allowance
      drops to half of that share, and the *learned cap* to 90 % of it. One congestion episode decreases
      once: 429s for requests sent before the last decrease (already in flight) only pause.
    * **additive increase**: the allowance then grows back by a tenth of the ceiling per period, up to the
      learned cap. When every process sharing the token has had its episode, the caps add up to about 90 %
      of the token's limit, and the 429s stop.
    * **slow recovery of the cap**: after ``quiet_periods`` periods without a 429 the cap itself grows by a
      twentieth of the ceiling per period, so capacity that another process gave up (a triggerer stopped)
      is taken up again; when the token is shared that growth ends in a new, single episode.

    The allowance never drops below ``floor`` (a twentieth of the ceiling, at least 1), so every waiting
    allocation keeps being checked, only less often.

    :param ceiling: The static per-process limit (requests per period).
    :param period: The period in seconds.
    :param clock: Monotonic clock (replaceable in tests).
    :param quiet_periods: Periods without a 429 before the learned cap starts to grow again.
    """

    DECREASE = 0.5
    """Allowance after a 429, as a fraction of the requests sent in the last period."""
    CAP_MARGIN = 0.9
    """Learned cap after a 429, as a fraction of the requests sent in the last period."""
    INCREASE = 0.1
    """Allowance regained per period without a 429, as a fraction of the ceiling."""
    CAP_RECOVERY = 0.05
    """Cap regained per period once quiet long enough, as a fraction of the ceiling."""
    FLOOR = 0.05
    """Lowest allowance, as a fraction of the ceiling."""

    def __init__(
        self, ceiling: int, period: float, clock: Callable[[], float] = time.monotonic, quiet_periods: float = 5.0
    ) -> None:
        self.ceiling = float(ceiling)
        self.period = period
        self.floor = max(1.0, self.ceiling * self.FLOOR)
        self.quiet_periods = quiet_periods
        self._clock = clock
        self._allowance = self.ceiling
        self._cap = self.ceiling
        self._updated_at = clock()
        self._last_decrease = float("-inf")
        self.decreases = 0
        """Congestion episodes seen (429s that lowered the allowance)."""
        self.throttled = 0
        """429 answers seen."""

    def current(self) -> float:
        """The allowance now (requests per period, ``floor`` <= allowance <= ``ceiling``)."""
        now = self._clock()
        elapsed = max(0.0, now - self._updated_at) / self.period
        # Only the time past the quiet stretch counts for the cap (this is read lazily, maybe long after).
        quiet_since = max(self._updated_at, self._last_decrease + self.quiet_periods * self.period)
        self._updated_at = now
        if now > quiet_since:
            recovered = self.CAP_RECOVERY * self.ceiling * (now - quiet_since) / self.period
            self._cap = min(self.ceiling, self._cap + recovered)
        self._allowance = min(self._cap, self._allowance + self.INCREASE * self.ceiling * elapsed)
        return self._allowance

    @property
    def cap(self) -> float:
        """The learned cap: the allowance grows back up to this (``ceiling`` until the first 429)."""
        return self._cap

    def on_throttled(self, usage: int, sent_at: float | None) -> bool:
        """The API answered 429; return whether this started a new episode (and lowered the allowance).

        :param usage: Requests of this process admitted in the last period (its share of the token's full window).
        :param sent_at: When the throttled request was sent (``None``: unknown, treated as new).
        """
        self.current()
        self.throttled += 1
        if sent_at is not None and sent_at < self._last_decrease:
            return False  # sent before the last decrease: part of the episode already answered
        share = min(float(usage), self._allowance)
        self._cap = max(self.floor, self.CAP_MARGIN * share)
        self._allowance = max(self.floor, min(self._cap, self.DECREASE * share))
        self._last_decrease = self._clock()
        self.decreases += 1
        return True


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

    Both rules use the :class:`AdaptiveLimit`'s allowance, which is ``max_requests`` until the API answers
    429 and never more: the static limit stays the ceiling.

    :param max_requests: Requests allowed per window (the ceiling).
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
        self.adaptive = AdaptiveLimit(max_requests, period, clock=clock)
        self._clock = clock
        self._sent: deque[RequestTicket] = deque()  # in sending order
        self._tokens = float(self.burst)
        self._refilled_at = clock()
        self._blocked_until = 0.0
        self._lock: asyncio.Lock | None = None
        self.waited_seconds = 0.0
        """Total time requests spent waiting for the limiter (for the benchmark and logs)."""

    @property
    def allowance(self) -> int:
        """Requests this process may send per period now (``max_requests`` until a 429 lowers it)."""
        return max(1, int(self.adaptive.current()))

    def penalize(self, seconds: float, ticket: RequestTicket | None = None) -> None:
        """The API answered 429: hold every request back for ``seconds`` from now, and adapt the allowance.

        :param seconds: How long to pause the connection (the answer's ``Retry-After``).
        :param ticket: The throttled request's ticket, if known: a 429 for a request sent before the last
            decrease belongs to the same episode and does not decrease again.
        """
        now = self._clock()
        self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))
        self._prune(now)
        if ticket is not None:
            ticket.throttled = True
        # This process's share of the token's full window: what BitGo admitted from it in the last period.
        # Requests still in flight may yet be refused, so they are left out (an estimate on the low side).
        usage = sum(1 for sent in self._sent if sent.answered and not sent.throttled)
        self.adaptive.on_throttled(usage, ticket.sent_at if ticket is not None else None)

    def _prune(self, now: float) -> None:
        while self._sent and self._sent[0].counted_from <= now - self.period:
            self._sent.popleft()

    def _wait_needed(self, now: float) -> float:
        allowance = self.adaptive.current()
        rate = allowance / self.period
        # The bucket shrinks with the allowance: a tenth of it, as the default burst is of the ceiling.
        burst = max(1.0, min(float(self.burst), allowance * self.burst / self.max_requests))
        self._tokens = min(burst, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        self._prune(now)
        wait = self._blocked_until - now
        if self._tokens < 1:
            wait = max(wait, (1 - self._tokens) / rate)
        if len(self._sent) >= max(1, int(allowance)):
            wait = max(wait, self._sent[0].counted_from + self.period - now)
        return wait

    def try_acquire(self) -> RequestTicket | float:
        """Count one more request as sent now if allowed and return its ticket; else the seconds to wait.

        The non-waiting half of :meth:`acquire` (also lets tests drive the limiter on a simulated clock).
        """
        now = self._clock()
        wait = self._wait_needed(now)
        if wait > 0:
            return wait
        self._tokens -= 1
        ticket = RequestTicket(now, now)
        self._sent.append(ticket)
        return ticket

    async def acquire(self) -> RequestTicket:
        """Wait until one more request is allowed, then count it as sent; return its ticket for :meth:`release`."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                got = self.try_acquire()
                if isinstance(got, RequestTicket):
                    return got
                self.waited_seconds += got
                await asyncio.sleep(got)

    def in_window(self) -> int:
        """Requests that count in the window now: sent, or answered, within the last ``period`` seconds.

        For the ``oes.rate_limit.in_window`` gauge: how close the connection runs to its limit.
        """
        cutoff = self._clock() - self.period
        # Counted one by one: release() moves a slow request's time forward, so the queue is not sorted by it.
        return sum(1 for ticket in self._sent if ticket.counted_from > cutoff)

    def stats(self) -> LimiterStats:
        """The figures of the ``oes.rate_limit.*`` gauges."""
        return LimiterStats(self.in_window(), self.max_requests, self.adaptive.current())

    def release(self, ticket: RequestTicket) -> None:
        """The request of ``ticket`` got its answer (or failed): its window now starts at this moment.

        :param ticket: What :meth:`acquire` returned.
        """
        ticket.counted_from = max(ticket.counted_from, self._clock())
        ticket.answered = True
