"""Issue 20 against the simulator over HTTP (the ``run()`` path), its clock moved forward instead of waiting:
a long pause while another subscriber keeps the shared feed open, and a burst larger than one event's cap.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers._watching import reconcile
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, requires_airflow_33
from tests.triggers.test_event_trigger_feed import Collected

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, requires_airflow_33]


@pytest.fixture(autouse=True)
def _server_clock_back(oes_simulator: OESSimulator) -> Iterator[None]:
    """These tests move the simulator's clock forward; the next test starts from its real clock."""
    oes_simulator.set_clock_offset(0.0)
    yield
    oes_simulator.set_clock_offset(0.0)


async def _polls(feed: _feed.ChangeFeed, count: int) -> None:
    target = feed.polls + count
    while feed.polls < target:
        await asyncio.sleep(0.01)


async def test_a_20_minute_pause_while_another_watcher_holds_the_feed_delivers_every_clearing(
    oes_simulator: OESSimulator,
    make_connection: Callable[..., str],
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2, feed_page_size=7)
    released = Collected(
        AllocationEventTrigger(oes_conn_id=conn_id, statuses="released", poll_interval=0.1), Accessor()
    )
    store = Accessor()
    settle = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.1), store)
    feed = await asyncio.wait_for(_first_feed(conn_id), 10)
    await asyncio.wait_for(_polls(feed, 3), 10)
    assert store.values  # the floor is stored
    await settle.stop()  # the settle DAG is paused; the release watcher keeps the feed open

    ids = sim.add_allocations(40)
    offset = 0.0
    for allocation_id in ids:  # 40 clearings over 20 minutes of server time, the feed polling throughout
        offset += 30.0
        sim.set_clock_offset(offset)
        sim.set_status(allocation_id, "cleared")
        await asyncio.wait_for(_polls(feed, 1), 10)
    assert feed.horizon is not None
    assert feed.horizon > sim.now().timestamp() - 1000
    assert feed.lookup(ids[0]) is None  # the first clearings are no longer held by the feed
    assert feed.covered_from is not None
    assert feed.covered_from >= feed.horizon - 1  # and it says so

    unpaused = time.monotonic()
    resumed = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.1), store)
    delivered = await resumed.wait_for(40, timeout=20)
    delay = time.monotonic() - unpaused
    await asyncio.sleep(0.5)
    assert sorted(resumed.ids()) == sorted(ids)  # every clearing of the pause, once
    assert len(resumed.ids()) == 40
    assert released.ids() == []
    print(f"delivery delay after the unpause: {delay:.2f} s for {len(delivered)} allocations")
    await resumed.stop()
    await released.stop()


async def _first_feed(conn_id: str) -> _feed.ChangeFeed:
    while True:
        for key, feed in _feed.running_feeds().items():
            if key[0] == conn_id and feed.polls:
                return feed
        await asyncio.sleep(0.01)


async def test_a_10000_allocation_burst_goes_out_in_capped_events(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2, feed_page_size=1000)
    run = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.1), Accessor())
    feed = await asyncio.wait_for(_first_feed(conn_id), 10)
    await asyncio.wait_for(_polls(feed, 2), 10)
    sim.set_clock_offset(5.0)
    ids = sim.add_allocations(10_000)
    sim.set_clock_offset(10.0)
    sim.schedule_flips(ids, "cleared")  # a burst: all at once
    await run.wait_for(10_000, timeout=120)
    sizes = [len(p["allocations"]) for p in run.payloads if p["allocations"]]
    largest = max(len(json.dumps(p)) for p in run.payloads)
    print(f"10,000-allocation burst: {len(sizes)} events, largest {max(sizes)} allocations, {largest} bytes")
    assert sorted(run.ids()) == sorted(ids)  # every one, once
    assert max(sizes) <= 500  # the default cap
    assert len(sizes) >= 20
    assert largest < 1_000_000
    await run.stop()


async def test_a_commit_later_than_the_overlap_is_caught_by_the_watchers_reconciliation(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "RECONCILE_SECONDS", 3600.0)
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2, feed_page_size=5)
    seen_late, unseen_late = sim.add_allocation(final_status="reserved"), sim.add_allocation(final_status="reserved")
    run = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.1), Accessor())
    feed = await asyncio.wait_for(_first_feed(conn_id), 10)
    await asyncio.wait_for(_polls(feed, 2), 10)
    sim.set_clock_offset(20.0)
    earlier = sim.add_allocations(10)
    for allocation_id in earlier:
        sim.set_status(allocation_id, "cleared")
    assert sorted(await run.wait_for(10)) == sorted(earlier)
    # Stamped 10 s back (5 times the overlap), below the watcher's floor: the feed's poll still reads it on
    # its last page, and the watcher no longer drops it.
    sim.set_status(seen_late, "cleared", late_by=10)
    assert sorted(await run.wait_for(11)) == sorted([*earlier, seen_late])

    sim.set_clock_offset(60.0)
    await asyncio.wait_for(_polls(feed, 2), 10)
    # Stamped 50 s back, below ten newer rows that are all below the cutoff: no poll reads it.
    sim.set_status(unseen_late, "cleared", late_by=50)
    await asyncio.wait_for(_polls(feed, 3), 10)
    assert unseen_late not in run.ids()
    assert feed.lookup(unseen_late) is None  # the feed never read it
    monkeypatch.setattr(reconcile, "RECONCILE_SECONDS", 0.5)  # the clock moves to the next reconciliation
    assert sorted(await run.wait_for(12)) == sorted([*earlier, seen_late, unseen_late])
    await asyncio.sleep(1.2)  # more reconciliations: nothing twice
    assert len(run.ids()) == 12
    await run.stop()
