"""Issue 20 against the simulator over HTTP (the ``run()`` path), its clock moved forward instead of waiting:
a long pause while another subscriber keeps the shared feed open, and a burst larger than one event's cap.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, requires_airflow_33
from tests.triggers.test_event_trigger_feed import Collected

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, requires_airflow_33]


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
