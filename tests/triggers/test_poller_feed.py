"""The shared poller's strategies: the change feed (default), id batches, single GETs, and the fallbacks.

Against an in-memory list endpoint behind httpx MockTransport (``_fake_feed_server``), so that every request
is counted exactly and the server's clock is the test's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.get_provider_info import get_provider_info
from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.triggers._fake_feed_server import ENTERPRISE, T0, FakeOES, connection_json, serve
from tests.triggers._support import TriggerFleet

if TYPE_CHECKING:
    from airflow_provider_oes.triggers._polling.feed_strategy import FeedStrategy

CONN = "oes_pf"
INTERVAL = 0.05
EXTRAS: dict[str, Any] = {"feed_page_size": 10, "batch_size": 10}
"""The test connection's extras; a test changes some with :func:`_set_extras`."""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeOES:
    return serve(monkeypatch, CONN, **EXTRAS)


def _set_extras(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", connection_json(**{**EXTRAS, **extra}))


class Fleet(TriggerFleet):
    """Triggers of the test connection under the fake server's enterprise, as in a triggerer."""

    def __init__(self) -> None:
        super().__init__(ENTERPRISE, CONN, INTERVAL)


def _first_poll_fails(server: FakeOES, until_waiting: int) -> list[dict[str, str]]:
    """Answer 503 (transient) to the first request, and to every one after it until ``until_waiting`` triggers
    have registered with the poller: the decision then sees the whole fleet, as after a restart, where the
    fleet is there before the first poll. Without the wait, a slow machine registers a fleet across two polls.
    Returns the queries answered 503 (they are in ``server.requests`` too)."""
    failed: list[dict[str, str]] = []
    state = {"open": False}

    def answer(query: dict[str, str]) -> httpx.Response | None:
        if not state["open"]:
            poller = polling.get_poller(CONN, ENTERPRISE)
            state["open"] = bool(failed) and poller is not None and len(poller.waiters) >= until_waiting
        if not state["open"]:
            failed.append(query)
            return httpx.Response(503, json={"error": "warming up"})
        return None

    server.answer = answer
    return failed


def _strategy() -> FeedStrategy:
    poller = polling.get_poller(CONN, ENTERPRISE)
    assert poller is not None
    assert poller.feed_strategy is not None
    return poller.feed_strategy


async def _polls(count: int, timeout: float = 10) -> _feed.ChangeFeed:
    """Wait until the feed has completed ``count`` more polls (and the strategy acted on them)."""

    async def wait() -> _feed.ChangeFeed:
        while (feed := _feed.get_feed(CONN, ENTERPRISE)) is None:
            await asyncio.sleep(0.005)
        target = feed.polls + count
        while feed.polls < target:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # let the strategy's after-poll work run
        return feed

    return await asyncio.wait_for(wait(), timeout)


# ----------------------------------------------------------------------------- settings


def test_poll_strategy_extra_default_alias_and_bad_value() -> None:
    from airflow.sdk import Connection

    def settings(**extra: Any) -> OESConnectionSettings:
        conn = Connection(conn_id="c", conn_type="oes", host="https://h.example", password="t", extra=json.dumps(extra))
        return OESConnectionSettings.from_connection(conn)

    assert settings().strategy == "feed"
    assert settings(poll_strategy="id_batches").strategy == "id_batches"
    assert settings(poll_strategy="single", batching=True).strategy == "single"
    assert settings(batching=False).strategy == "single"  # the deprecated extra still works
    assert settings(batching=False, poll_strategy="feed").strategy == "feed"  # the new one wins
    with pytest.raises(
        OESInvalidRequestError, match=r"'poll_strategy' must be one of feed, id_batches, single, got 'fast'"
    ):
        settings(poll_strategy="fast")
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    # A text field (as every other string extra in the form), its values named in the description.
    assert fields["poll_strategy"]["schema"] == {"type": ["string", "null"]}
    assert all(value in fields["poll_strategy"]["description"] for value in ("'feed'", "'id_batches'", "'single'"))
    assert {"feed_overlap", "feed_page_size", "reconcile_interval"} <= set(fields)


def test_trigger_carries_last_check_and_old_kwargs_still_work() -> None:
    trigger = AllocationStatusTrigger(
        "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "e", last_check="2026-11-25T18:30:00.000Z"
    )
    _, kwargs = trigger.serialize()
    assert kwargs["last_check"] == "2026-11-25T18:30:00.000Z"
    assert AllocationStatusTrigger(**kwargs).serialize() == trigger.serialize()
    old = {
        "allocation_id": "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
        "enterprise_id": "e",
        "oes_conn_id": "c",
        "poll_interval": 5.0,
    }
    assert "last_check" not in AllocationStatusTrigger(**old).serialize()[1]


# ----------------------------------------------------------------------------- the feed strategy


async def test_vouched_waiters_cost_one_request_per_poll_and_flips_wake_them(server: FakeOES) -> None:
    ids = [server.add() for _ in range(40)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        feed = await _polls(2)
        assert server.id_requests() == []  # the feed vouches for all of them: no id checks at all
        before, polls = len(server.requests), feed.polls
        await _polls(3)
        assert len(server.requests) - before == feed.polls - polls  # one request per poll, 40 waiting
        server.now += 5
        server.flip(ids[0], "cleared")
        server.flip(ids[1], "released")
        await fleet.wait_for(ids[:2])
        assert fleet.events[ids[0]]["allocation"]["status"] == "cleared"
        assert fleet.events[ids[1]]["allocation"]["status"] == "released"
        assert len(fleet.events) == 2
        assert server.single_gets == []
    finally:
        await fleet.close()


async def test_flip_between_the_sensors_check_and_registration_is_not_missed(server: FakeOES) -> None:
    other = server.add()
    fleet = Fleet()
    try:
        fleet.start(other, last_check=T0)
        await _polls(1)
        late = server.add()
        server.now += 3
        checked_at = server.now  # the sensor's GET saw it reserved at this server time...
        server.now += 2
        server.flip(late, "cleared")  # ...it cleared before its trigger registered
        await _polls(1)  # the feed has taken the row already
        requests = len(server.requests)
        fleet.start(late, last_check=checked_at)
        await fleet.wait_for([late], timeout=1)
        assert fleet.events[late]["allocation"]["status"] == "cleared"
        assert server.id_requests() == []  # woken from what the feed held: no request at all
        assert len(server.requests) - requests <= 1
    finally:
        await fleet.close()


async def test_waiters_the_feed_cannot_vouch_for_are_checked_by_id_once(server: FakeOES) -> None:
    fresh = [server.add() for _ in range(25)]
    failed = _first_poll_fails(server, until_waiting=len(fresh))
    fleet = Fleet()
    try:
        for i in fresh[:15]:
            fleet.start(i)  # no last check (an old trigger, or started from the triggerer)
        for i in fresh[15:]:
            fleet.start(i, last_check=T0 - 2000)  # older than anything the feed has read
        await _polls(3)
        assert not [q for q in failed if "allocationIds" in q]  # no id check before the feed answered
        id_queries = server.id_requests()
        assert sorted(i for q in id_queries for i in q["allocationIds"].split(",")) == sorted(fresh)
        assert len(id_queries) == 3  # 25 ids in batches of 10, once
        assert _strategy().unvouched == {}
        server.now += 5
        server.flip(fresh[3], "cleared")
        await fleet.wait_for([fresh[3]])
        assert len(server.id_requests()) == 3  # the feed, not another id check, woke it
    finally:
        await fleet.close()


async def test_final_at_the_id_check_fires_at_once(server: FakeOES) -> None:
    done = server.add("released", updated_at=T0 - 5000)
    fleet = Fleet()
    try:
        fleet.start(done)
        await fleet.wait_for([done])
        assert fleet.events[done]["status"] == "terminal"
        assert fleet.events[done]["allocation"]["status"] == "released"
    finally:
        await fleet.close()


async def test_burst_pages_through_in_one_poll(server: FakeOES) -> None:
    ids = [server.add() for _ in range(60)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0, interval=3600)  # polls only when the test wakes the feed

        async def first_poll() -> _feed.ChangeFeed:
            while (feed := _feed.get_feed(CONN, ENTERPRISE)) is None or feed.polls < 1:
                await asyncio.sleep(0.005)
            return feed

        feed = await asyncio.wait_for(first_poll(), 5)
        await asyncio.sleep(0.05)
        server.now += 5
        for i in ids[:55]:
            server.flip(i, "cleared")
        pages, polls = feed.pages, feed.polls
        feed.wake()
        await fleet.wait_for(ids[:55])
        assert feed.polls == polls + 1
        assert feed.pages - pages == 6  # 55 rows in pages of 10, one after the other in the same poll
        assert set(fleet.events) == set(ids[:55])
    finally:
        await fleet.close()


async def test_every_request_passes_the_connection_limiter(server: FakeOES) -> None:
    ids = [server.add() for _ in range(12)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i)
        await _polls(3)
        connection = connections.find(CONN)
        # every request took a ticket (released tickets stay in the window for the period)
        assert connection.limiter.stats().in_window == len(server.requests) == connection.client.requests_sent
    finally:
        await fleet.close()


# ----------------------------------------------------------------------------- restart rule


async def test_restart_pages_back_when_that_is_cheaper_than_id_batches(server: FakeOES) -> None:
    server.now = T0 + 600
    ids = [server.add(updated_at=T0 - 1000) for _ in range(100)]
    for k in range(30):  # 30 changes of other allocations over the 10 minutes since the last checks
        server.add("cleared", updated_at=T0 + 20 * k)
    for i in ids[:3]:
        server.flip(i, "cleared", updated_at=T0 + 100)  # flipped while no triggerer ran
    failed = _first_poll_fails(server, until_waiting=len(ids))
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)  # last checks 10 minutes old
        await fleet.wait_for(ids[:3])
        await _polls(2)
        strategy = _strategy()
        assert strategy.backfills == 1
        assert strategy.unvouched == {}
        assert server.id_requests() == []  # 100 waiting = 10 id batches; the feed needed 4 pages
        feed_pages = len(server.feed_requests())
        assert feed_pages - len(failed) <= 10
        assert {i for i in fleet.events} == set(ids[:3])
    finally:
        await fleet.close()


async def test_restart_checks_ids_when_paging_back_would_cost_more(server: FakeOES) -> None:
    server.now = T0 + 600
    ids = [server.add(updated_at=T0 - 1000) for _ in range(20)]
    for k in range(600):  # a busy enterprise: one change per second for 10 minutes (60 pages back)
        server.add("cleared", updated_at=T0 + k)
    failed = _first_poll_fails(server, until_waiting=len(ids))
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        feed = await _polls(2)
        strategy = _strategy()
        assert strategy.backfills == 0
        assert len(server.id_requests()) == 2  # 20 waiting = 2 id batches, cheaper than ~60 pages
        assert strategy.unvouched == {}
        # after the failed ones, normal polls only (a 30 s window = 3 pages + 1), no paging back
        assert len(server.feed_requests()) - len(failed) <= 4 * (feed.polls + 1)  # (+1: a poll may be under way)
    finally:
        await fleet.close()


# ----------------------------------------------------------------------------- safety net


async def test_reconciliation_finds_what_the_feed_missed_and_logs_it(
    server: FakeOES, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _set_extras(monkeypatch, reconcile_interval=1)
    ids = [server.add() for _ in range(25)]
    hidden = ids[7]
    server.flip(hidden, "cleared", updated_at=T0 - 60)  # final long ago...
    real_handle = server.handle

    def hide_from_feed(request: httpx.Request) -> httpx.Response:
        response = real_handle(request)
        if "sortField=updatedAt" in str(request.url):  # ...but a faulty server leaves it out of the feed
            body = json.loads(response.content)
            body["allocations"] = [r for r in body["allocations"] if r["id"] != hidden]
            return httpx.Response(200, content=json.dumps(body).encode(), headers=response.headers)
        return response

    monkeypatch.setattr(server, "handle", hide_from_feed)
    fleet = Fleet()
    caplog.set_level(logging.ERROR, logger="airflow_provider_oes.triggers._polling")
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        await fleet.wait_for([hidden], timeout=15)
        strategy = _strategy()
        assert strategy.missed_by_feed == [hidden]
        assert "should have seen and did not" in caplog.text
        # one batch per poll: the 25 ids took 3 polls, never more than one id request per poll
        assert strategy.reconcile_requests >= 1
        assert len(server.id_requests()) <= _feed.get_feed(CONN, ENTERPRISE).polls  # type: ignore[union-attr]
        assert set(fleet.events) == {hidden}
    finally:
        await fleet.close()


async def test_reconciliation_of_a_fresh_flip_is_not_called_a_miss(
    server: FakeOES, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_extras(monkeypatch, reconcile_interval=1)
    ids = [server.add() for _ in range(5)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        await _polls(1)
        server.now += 1
        server.flip(ids[0], "cleared")
        await fleet.wait_for([ids[0]])
        await asyncio.sleep(1.2)
        await _polls(2)
        assert _strategy().missed_by_feed == []
        assert _strategy().reconcile_passes >= 1
    finally:
        await fleet.close()


# ----------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("status", [400, 404])
async def test_feed_rejected_falls_back_to_id_batches_and_says_so_once(
    server: FakeOES, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_oes.triggers._polling")
    server.answer = lambda q: httpx.Response(status, json={"error": "no such sort"}) if "sortField" in q else None
    ids = [server.add() for _ in range(15)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)

        async def switched() -> None:
            while (p := polling.get_poller(CONN, ENTERPRISE)) is None or p.strategy != "id_batches":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(switched(), 5)
        server.flip(ids[4], "released")
        await fleet.wait_for([ids[4]])
        await asyncio.sleep(0.2)
        assert len(server.feed_requests()) == 1  # asked once, never again
        assert fleet.events[ids[4]]["allocation"]["status"] == "released"
        assert set(fleet.events) == {ids[4]}
        out = caplog.text
        assert out.count("Switching to id batches") == 1
        assert f"HTTP {status}" in out
    finally:
        await fleet.close()


async def test_list_endpoint_rejected_means_single_gets_not_error_events(
    server: FakeOES, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_extras(monkeypatch, poll_strategy="id_batches")
    server.answer = lambda q: httpx.Response(400, json={"error": "allocationIds not supported"})
    ids = [server.add() for _ in range(12)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i)

        async def switched() -> None:
            while (p := polling.get_poller(CONN, ENTERPRISE)) is None or p.strategy != "single":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(switched(), 5)
        await asyncio.sleep(0.2)
        assert fleet.events == {}  # the batches got no error events
        # The first sweep's batches (12 ids, 10 per request) went out together, before any answer came back.
        rejected = len(server.id_requests())
        assert 1 <= rejected <= math.ceil(len(ids) / 10)
        server.flip(ids[0], "cleared")
        await fleet.wait_for([ids[0]])
        assert fleet.events[ids[0]]["status"] == "terminal"
        assert len(server.id_requests()) == rejected  # never tried again
    finally:
        await fleet.close()


async def test_feed_strategy_list_rejected_for_id_checks_uses_single_gets(server: FakeOES) -> None:
    server.answer = lambda q: httpx.Response(404, json={"error": "nope"}) if "allocationIds" in q else None
    ids = [server.add() for _ in range(3)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i)  # unvouched: id checks, which the server rejects

        async def all_checked() -> None:
            while not set(ids) <= set(server.single_gets):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_checked(), 5)
        await _polls(2)
        assert fleet.events == {}  # no error events for the rejected batch
        assert _strategy().unvouched == {}  # the single GETs' Date vouched for them: checked once
        assert len(server.single_gets) == len(ids)
        server.now += 5
        server.flip(ids[1], "cleared")
        await fleet.wait_for([ids[1]])
        assert fleet.events[ids[1]]["status"] == "terminal"
        assert len(server.single_gets) == len(ids)  # the feed woke it
    finally:
        await fleet.close()


async def test_feed_401_falls_back_so_each_trigger_learns_the_error(server: FakeOES) -> None:
    server.answer = lambda q: httpx.Response(401, json={"error": "bad token"})
    ids = [server.add() for _ in range(3)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        await fleet.wait_for(ids)
        assert {e["status"] for e in fleet.events.values()} == {"error"}
        assert {e["status_code"] for e in fleet.events.values()} == {401}
    finally:
        await fleet.close()


async def test_transient_feed_errors_keep_the_feed(server: FakeOES) -> None:
    calls = {"n": 0}

    def flaky(q: dict[str, str]) -> httpx.Response | None:
        calls["n"] += 1
        return httpx.Response(503, json={"error": "busy"}) if calls["n"] <= 3 else None

    server.answer = flaky
    ids = [server.add() for _ in range(3)]
    fleet = Fleet()
    try:
        for i in ids:
            fleet.start(i, last_check=T0)
        await _polls(1)
        server.now += 5
        server.flip(ids[2], "cleared")
        await fleet.wait_for([ids[2]])
        assert polling.get_poller(CONN, ENTERPRISE).strategy == "feed"  # type: ignore[union-attr]
        assert server.id_requests() == []
    finally:
        await fleet.close()


async def test_trigger_without_enterprise_uses_the_connections(server: FakeOES) -> None:
    # As a sensor started from the triggerer creates it: no enterprise id, no last check, no interval.
    allocation_id = server.add("cleared", updated_at=T0 - 5000)
    trigger = AllocationStatusTrigger(allocation_id, "", CONN, None)
    events = [event.payload async for event in trigger.run()]
    assert events[0]["status"] == "terminal"
    assert events[0]["enterprise_id"] == ENTERPRISE


async def test_restart_in_waves_wakes_triggers_whose_change_was_read_before_they_registered(
    server: FakeOES,
) -> None:
    # A triggerer loads its triggers in chunks: the feed's first poll reads changes of allocations whose
    # triggers register only afterwards, with last checks that need a backfill. Those must fire too.
    server.now = T0 + 600
    first = [server.add(updated_at=T0 - 1000) for _ in range(60)]
    second = [server.add(updated_at=T0 - 1000) for _ in range(60)]
    for k in range(30):
        server.add("cleared", updated_at=T0 + 20 * k)
    for i in second[:4]:
        server.flip(i, "cleared", updated_at=T0 + 595)  # newest rows: on the first poll's first page
    fleet = Fleet()
    try:
        for i in first:
            fleet.start(i, last_check=T0)
        await _polls(2)
        for i in second:
            fleet.start(i, last_check=T0)
        await fleet.wait_for(second[:4])
        await _polls(3)
        assert _strategy().unvouched == {}
        assert set(fleet.events) == set(second[:4])
    finally:
        await fleet.close()
