"""The client-side rate limiter (:mod:`airflow_provider_oes._rate_limit`): window, pacing, release, 429 pause."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_oes._rate_limit import RateLimiter, RequestTicket
from airflow_provider_oes.exceptions import OESInvalidRequestError


async def test_rate_limiter_never_exceeds_its_window() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(max_requests=4, period=0.25)
    stamps = []
    for _ in range(10):
        await limiter.acquire()
        stamps.append(loop.time())
    for i in range(len(stamps) - 4):
        assert stamps[i + 4] - stamps[i] >= 0.25 - 1e-3  # any 5 requests span at least one period
    assert limiter.waited_seconds > 0


async def test_rate_limiter_paces_after_its_burst() -> None:
    """10 per second with a burst of 3: three at once, then one every 0.1 s (no spending the window at once)."""
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(max_requests=10, period=1.0, burst=3)
    start = loop.time()
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(loop.time() - start)
    assert stamps[2] < 0.05
    # The bucket's rule: by time t at most burst + rate * t requests went out. (Stated cumulatively, not
    # per pair: a loop stalled by a loaded machine lets the bucket refill, and then two may go closer.)
    for n, stamp in enumerate(stamps, start=1):
        assert stamp >= (n - 3) * 0.1 - 5e-3, stamps


async def test_rate_limiter_window_starts_when_the_answer_arrives() -> None:
    """A slow request keeps its slot until period after its answer, so the server never sees too many."""
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(max_requests=1, period=0.3, burst=1)
    start = loop.time()
    slow = await limiter.acquire()
    await asyncio.sleep(0.2)
    limiter.release(slow)  # answered at 0.2 s: the next request may go at 0.5 s, not at 0.3 s
    await limiter.acquire()
    assert loop.time() - start >= 0.5 - 5e-3


def test_rate_limiter_rejects_a_useless_limit() -> None:
    with pytest.raises(OESInvalidRequestError, match="0 per 60"):
        RateLimiter(0, 60)


async def test_ticket_is_a_named_record_moved_to_the_answer_time_on_release() -> None:
    now = [100.0]
    limiter = RateLimiter(max_requests=2, period=10.0, burst=2, clock=lambda: now[0])
    ticket = await limiter.acquire()
    assert isinstance(ticket, RequestTicket)
    assert ticket.counted_from == 100.0
    now[0] = 103.5
    limiter.release(ticket)
    assert ticket.counted_from == 103.5
    now[0] = 101.0  # a clock going back never moves a ticket earlier
    limiter.release(ticket)
    assert ticket.counted_from == 103.5


async def test_penalize_holds_the_next_request_back() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(max_requests=100, period=1.0, burst=10)
    limiter.penalize(0.2)
    start = loop.time()
    await limiter.acquire()
    assert loop.time() - start >= 0.2 - 5e-3
    assert limiter.waited_seconds > 0


async def test_in_window_counts_requests_until_a_period_after_their_answer() -> None:
    now = [0.0]
    limiter = RateLimiter(10, 60, burst=10, clock=lambda: now[0])
    first = await limiter.acquire()
    await limiter.acquire()
    assert limiter.in_window() == 2
    now[0] = 30.0
    limiter.release(first)  # answered late: counts until 90 s
    now[0] = 61.0
    assert limiter.in_window() == 1
    now[0] = 91.0
    assert limiter.in_window() == 0
