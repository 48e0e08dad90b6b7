"""The client-side rate limiter (:mod:`airflow_provider_oes._rate_limit`): window, pacing, release, 429 pause."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_oes._rate_limit import AdaptiveLimit, RateLimiter, RequestTicket
from airflow_provider_oes.exceptions import OESInvalidRequestError
from tests.harness.shared_token import simulate


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


# ---------------------------------------------------------------------------------------------------------
# The adaptive limit (AIMD on 429), on a fake clock.


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_adaptive_limit_is_the_ceiling_until_a_429() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(360, 60.0, clock=clock)
    assert limit.current() == 360
    clock.now += 3600
    assert limit.current() == 360  # never above the static limit
    assert (limit.decreases, limit.throttled) == (0, 0)


def test_429_halves_the_share_and_caps_recovery_at_ninety_percent_of_it() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(360, 60.0, clock=clock)
    assert limit.on_throttled(usage=120, sent_at=clock.now) is True
    assert limit.current() == 60  # half of the 120 this process had in the token's full window
    assert limit.cap == pytest.approx(108)
    clock.now += 30  # half a period: +10 % of the ceiling per period
    assert limit.current() == pytest.approx(60 + 18)
    clock.now += 60
    assert limit.current() == pytest.approx(108)  # up to the learned cap, not to the ceiling
    clock.now += 60 * 3
    assert limit.current() == pytest.approx(108)  # still quiet for less than 5 periods: the cap holds


def test_one_episode_decreases_once_however_many_requests_were_in_flight() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(360, 60.0, clock=clock)
    sent_before = clock.now - 0.5
    limit.on_throttled(usage=200, sent_at=sent_before)
    clock.now += 0.2
    for _ in range(7):  # the other in-flight requests of the same burst come back 429 too
        assert limit.on_throttled(usage=200, sent_at=sent_before) is False
    assert (limit.decreases, limit.throttled) == (1, 8)
    assert limit.current() == pytest.approx(100, abs=0.2)  # halved once (+0.2 s of regrowth)
    # A request sent after the decrease that still meets a full window is a new episode.
    limit.on_throttled(usage=100, sent_at=clock.now)
    assert limit.decreases == 2
    assert limit.current() == pytest.approx(50)
    assert limit.cap == pytest.approx(90)


def test_allowance_never_drops_below_the_floor() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(360, 60.0, clock=clock)
    for _ in range(20):
        clock.now += 1
        limit.on_throttled(usage=1, sent_at=clock.now)
    assert limit.floor == 18  # a twentieth of the ceiling
    assert limit.current() == 18
    assert limit.cap == 18
    assert AdaptiveLimit(10, 1.0, clock=clock).floor == 1  # at least one request per period


def test_cap_recovers_slowly_after_quiet_periods_up_to_the_ceiling() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(360, 60.0, clock=clock)
    limit.on_throttled(usage=120, sent_at=clock.now)
    clock.now += 5 * 60  # five quiet periods: the cap starts to grow from here
    assert limit.current() == pytest.approx(108)
    clock.now += 60
    assert limit.cap == pytest.approx(108)  # not yet read since
    assert limit.current() == pytest.approx(108 + 18)  # +5 % of the ceiling per period
    clock.now += 60 * 100
    assert limit.current() == 360
    assert limit.cap == 360


def test_limiter_429_pauses_for_retry_after_and_lowers_its_window() -> None:
    """With the fake clock: Retry-After blocks, then the window admits only the lowered allowance."""
    clock = _Clock()
    limiter = RateLimiter(max_requests=100, period=10.0, burst=100, clock=clock)
    tickets = []
    for _ in range(40):
        got = limiter.try_acquire()
        assert isinstance(got, RequestTicket)
        tickets.append(got)
    for ticket in tickets:
        limiter.release(ticket)
    limiter.penalize(30.0, tickets[-1])
    assert limiter.allowance == 19  # half of the 39 admitted in the period (the 40th was the 429)
    assert limiter.try_acquire() == pytest.approx(30.0)  # Retry-After holds every request back
    clock.now += 30.0
    start = clock.now
    sent = []
    while clock.now < start + 10.0:
        got = limiter.try_acquire()
        if isinstance(got, RequestTicket):
            sent.append(clock.now)
            limiter.release(got)
        else:
            clock.now += got
    # During the 30 s pause the allowance grew back, but only to the learned cap: 90 % of the 39 this process
    # had in the full window (100 were allowed before the 429).
    assert len(sent) == 35


def test_in_flight_429s_of_one_burst_are_one_episode_in_the_limiter() -> None:
    clock = _Clock()
    limiter = RateLimiter(max_requests=100, period=10.0, burst=100, clock=clock)
    tickets = [limiter.try_acquire() for _ in range(60)]
    assert all(isinstance(t, RequestTicket) for t in tickets)
    clock.now += 0.1
    for ticket in tickets:
        assert isinstance(ticket, RequestTicket)
        limiter.release(ticket)
    for ticket in tickets[40:]:  # the last 20 of the burst come back 429
        assert isinstance(ticket, RequestTicket)
        limiter.penalize(1.0, ticket)
    assert limiter.adaptive.decreases == 1
    assert limiter.adaptive.throttled == 20
    assert limiter.allowance == 29  # half of the 59 not (yet) refused, once: not halved 20 times


def test_requests_still_in_flight_do_not_count_as_this_process_share() -> None:
    """The estimate errs low: an unanswered request may still be refused, so it is not counted."""
    clock = _Clock()
    limiter = RateLimiter(max_requests=100, period=10.0, burst=100, clock=clock)
    tickets = [limiter.try_acquire() for _ in range(30)]
    for ticket in tickets[:10]:
        assert isinstance(ticket, RequestTicket)
        limiter.release(ticket)
    throttled = tickets[10]
    assert isinstance(throttled, RequestTicket)
    limiter.release(throttled)
    limiter.penalize(1.0, throttled)
    assert limiter.adaptive.cap == pytest.approx(9)  # 90 % of the 10 answered and admitted, not of 30


# ---------------------------------------------------------------------------------------------------------
# Several processes sharing one token: real limiters against a model of BitGo's per-token window.


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_processes_sharing_a_token_converge_under_its_limit(processes: int) -> None:
    """Each process has the full 360/60 s as its static limit and always more to send (no hand division)."""
    result = simulate(processes, limit=360, window=60.0, duration=300.0)
    figures = result.figures
    print(f"\n[shared token] {processes} process(es): {figures.summary()}; allowances {result.allowance}")
    assert figures.max_in_any_window_after_convergence() <= 360
    assert figures.converged_at <= 60.0  # within one window
    assert len(figures.throttled) <= 3 * processes
    assert figures.per_window_after_convergence() >= 0.7 * 360  # under the limit, not starved
    if processes == 1:
        assert figures.throttled == []  # alone, the static limit already fits
        assert figures.per_window_after_convergence() == pytest.approx(360, rel=0.02)
    for name, sent in result.sent.items():
        assert sent >= 0.5 * 300 / 60 * 360 / processes, (name, result.sent)  # each keeps a fair part


def test_processes_joining_one_by_one_converge_and_share() -> None:
    """A triggerer added later starts at its share of a full window and gains as the caps recover."""
    result = simulate(3, limit=360, window=60.0, duration=1200.0, joins_at=[0.0, 120.0, 240.0])
    figures = result.figures
    print(f"\n[shared token] joining one by one: {figures.summary()}; allowances {result.allowance}")
    assert figures.max_in_any_window_after_convergence() <= 360
    # Long after the joins only the caps' slow recovery (from 5 quiet periods after a process's last decrease,
    # a twentieth of the ceiling per period) meets the limit again: a probe for capacity others gave up,
    # which costs the token less than one 429 a minute.
    late = [t for t in figures.throttled if t > 600.0]
    assert len(late) <= (1200 - 600) / 60, late
    after_joins = [t for t, _ok in figures.requests if t > 600.0]
    assert len(after_joins) >= 0.7 * 360 * (1200 - 600) / 60  # the token stays well used
    assert min(result.allowance.values()) >= 0.25 * 360 / 3  # nobody left at the floor
    assert sum(result.allowance.values()) <= 360


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
