"""The change-feed strategy against the real local simulator (HTTP on 127.0.0.1) and its feed model:
clock skew between the simulator and this machine, late commits, changes while the poller pages, and a
list endpoint that refuses the feed query or every list query.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes._api import format_timestamp
from airflow_provider_oes.triggers import _feed, _poller
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

INTERVAL = 0.2


class _Fleet:
    def __init__(self, sim: OESSimulator, conn_id: str) -> None:
        self.sim, self.conn_id = sim, conn_id
        self.events: dict[str, dict[str, Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, allocation_id: str, last_check: float | None) -> None:
        trigger = AllocationStatusTrigger(
            allocation_id,
            self.sim.enterprise_id,
            self.conn_id,
            INTERVAL,
            last_check=None if last_check is None else format_timestamp(last_check),
        )

        async def run() -> None:
            async for event in trigger.run():
                self.events[allocation_id] = event.payload

        self.tasks.append(asyncio.ensure_future(run()))

    async def wait_for(self, ids: list[str], timeout: float = 20) -> None:
        async def done() -> None:
            while not all(i in self.events for i in ids):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(done(), timeout)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


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
    fleet = _Fleet(sim, conn_id)
    try:
        for allocation_id in ids:
            fleet.start(allocation_id, checked)
        feed = await _feed_polls(sim, 1)
        assert feed.watermark is not None
        assert abs(feed.watermark - sim.now().timestamp()) < 5  # the server's clock, not ours
        assert _poller.get_poller(conn_id, sim.enterprise_id).feed_strategy.unvouched == {}  # type: ignore[union-attr]
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


async def test_feed_refused_falls_back_to_id_batches(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    sim.reject_feed(400)
    conn_id = make_connection(poll_strategy="feed")
    ids = sim.add_allocations(5)
    fleet = _Fleet(sim, conn_id)
    try:
        for allocation_id in ids:
            fleet.start(allocation_id, sim.now().timestamp())
        sim.set_status(ids[2], "cleared")
        await fleet.wait_for([ids[2]])
        assert _poller.get_poller(conn_id, sim.enterprise_id).strategy == "id_batches"  # type: ignore[union-attr]
        assert set(fleet.events) == {ids[2]}
    finally:
        await fleet.close()


async def test_list_endpoint_refused_means_single_gets(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    sim.reject_list(404)
    conn_id = make_connection(poll_strategy="feed")
    ids = sim.add_allocations(5)
    fleet = _Fleet(sim, conn_id)
    try:
        for allocation_id in ids:
            fleet.start(allocation_id, sim.now().timestamp())
        sim.set_status(ids[1], "released")
        await fleet.wait_for([ids[1]])
        await asyncio.sleep(3 * INTERVAL)
        assert fleet.events[ids[1]]["status"] == "terminal"
        assert set(fleet.events) == {ids[1]}  # the others got no error events
        assert _poller.get_poller(conn_id, sim.enterprise_id).strategy == "single"  # type: ignore[union-attr]
    finally:
        await fleet.close()
