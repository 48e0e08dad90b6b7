"""The change-feed strategy against the real local simulator (HTTP on 127.0.0.1) and its feed model:
clock skew between the simulator and this machine, late commits, changes while the poller pages, and a
list endpoint that refuses the feed query or every list query.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers import _polling as polling
from tests.triggers._support import TriggerFleet

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

INTERVAL = 0.2


async def _feed_polls(sim: OESSimulator, count: int) -> _feed.ChangeFeed:
    async def wait() -> _feed.ChangeFeed:
        while (feed := _feed.get_feed("oes_trig", sim.enterprise_id)) is None or feed.polls < 1:
            await asyncio.sleep(0.01)
        target = feed.polls + count
        while feed.polls < target:
            await asyncio.sleep(0.01)
        return feed

    return await asyncio.wait_for(wait(), 20)


async def test_clock_skew_late_commit_and_flips_while_paging(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    ids = sim.add_allocations(30)  # created before the jump: a late commit may stamp updatedAt 20 s back
    sim.set_clock_offset(3 * 3600.0)  # the API's clock runs three hours ahead of this machine's
    conn_id = make_connection(poll_strategy="feed", feed_page_size=5)
    checked = sim.now().timestamp()  # the sensors' last check, in the server's time
    fleet = TriggerFleet(sim.enterprise_id, conn_id, INTERVAL, wait_timeout=20)
    try:
        for allocation_id in ids:
            fleet.start(allocation_id, checked)
        feed = await _feed_polls(sim, 1)
        assert feed.watermark is not None
        assert abs(feed.watermark - sim.now().timestamp()) < 5  # the server's clock, not ours
        assert polling.get_poller(conn_id, sim.enterprise_id).feed_strategy.unvouched == {}  # type: ignore[union-attr]
        # Late commit: visible now, stamped 20 s back (within the 30 s overlap).
        sim.set_status(ids[0], "cleared", late_by=20)
        # Changes while the poller pages: 12 rows (3 pages of 5), 4 more flip after the first page is answered.
        for allocation_id in ids[1:13]:
            sim.set_status(allocation_id, "released")
        sim.flip_after_requests(ids[13:17], status="cleared", requests=1)
        await fleet.wait_for(ids[:17])
        assert [fleet.events[i]["allocation"]["status"] for i in ids[:17]] == ["cleared"] + ["released"] * 12 + [
            "cleared"
        ] * 4
        assert set(fleet.events) == set(ids[:17])  # no event for a waiting one
        assert feed.late_rows >= 1
        assert [r for r in sim.requests if "allocationIds" in r[2]] == []  # the feed alone covered them
    finally:
        await fleet.close()


@pytest.mark.parametrize(
    ("refuse", "code", "strategy", "status"),
    [
        pytest.param("reject_feed", 400, "id_batches", "cleared", id="feed-refused-falls-back-to-id-batches"),
        pytest.param("reject_list", 404, "single", "released", id="list-endpoint-refused-means-single-gets"),
    ],
)
async def test_a_refused_list_query_falls_back_and_errs_for_nobody(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], refuse: str, code: int, strategy: str, status: str
) -> None:
    """The simulator refuses the feed's query (or every list query): the poller falls back to the next
    strategy, the one allocation that changed gets its event, and the others get no error event."""
    sim = oes_simulator
    getattr(sim, refuse)(code)
    conn_id = make_connection(poll_strategy="feed")
    ids = sim.add_allocations(5)
    fleet = TriggerFleet(sim.enterprise_id, conn_id, INTERVAL, wait_timeout=20)
    try:
        for allocation_id in ids:
            fleet.start(allocation_id, sim.now().timestamp())
        sim.set_status(ids[2], status)
        await fleet.wait_for([ids[2]])
        await asyncio.sleep(3 * INTERVAL)
        assert fleet.events[ids[2]]["status"] == "terminal"
        assert fleet.events[ids[2]]["allocation"]["status"] == status
        assert set(fleet.events) == {ids[2]}  # the others got no error events
        assert polling.get_poller(conn_id, sim.enterprise_id).strategy == strategy  # type: ignore[union-attr]
    finally:
        await fleet.close()
