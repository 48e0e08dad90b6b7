"""AllocationEventTrigger on the real change feed, against the simulator over HTTP (the ``run()`` path).

The filters must reach the list endpoint as its own query parameters, the feed must be shared with other
watchers of the same query, and what becomes final must come out as events, once each.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, requires_airflow_33

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, requires_airflow_33]

LIST_SUFFIX = "/clients/allocations"


class Collected:
    """Runs ``trigger.run()`` in a task and collects its events."""

    def __init__(self, trigger: AllocationEventTrigger, store: Accessor) -> None:
        trigger.asset_state_store = store
        self.trigger = trigger
        self.payloads: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.trigger.run():
            self.payloads.append(event.payload)

    def ids(self) -> list[str]:
        return [a["id"] for p in self.payloads for a in p["allocations"]]

    async def wait_for(self, count: int, timeout: float = 15) -> list[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.ids()) < count:
            if self.task.done():
                raise AssertionError(f"the trigger ended: {self.task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {self.ids()} after {timeout} s")
            await asyncio.sleep(0.05)
        return self.ids()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _list_queries(sim: OESSimulator) -> list[dict[str, list[str]]]:
    return [parse_qs(query) for _m, path, query, _t in sim.requests if path.endswith(LIST_SUFFIX)]


async def test_filters_are_the_list_queries_own_and_matching_finals_come_out_once(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(feed_overlap=2)
    connection_id = "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f"
    trigger = AllocationEventTrigger(
        oes_conn_id=conn_id,  # enterprise from the connection, resolved in the triggerer
        statuses=["cleared"],
        types=["allocation"],
        currencies=["ofctbtc"],
        connection_ids=[connection_id],
        poll_interval=0.2,
    )
    before = oes_simulator.add_allocation(final_status="cleared", connection_id=connection_id)  # before start
    # "Now" is the server's Date of the first poll, in whole seconds: start clearly after `before`.
    await asyncio.sleep(1.1)
    run = Collected(trigger, Accessor())
    await asyncio.sleep(1.0)  # the first poll fixes "now"
    matching = [oes_simulator.add_allocation(final_status="reserved", connection_id=connection_id) for _ in range(3)]
    other_currency = oes_simulator.add_allocation(final_status="reserved", currency="ofcteth")
    deallocation = oes_simulator.add_allocation(final_status="reserved", type="deallocation")
    released = oes_simulator.add_allocation(final_status="reserved", connection_id=connection_id)
    for allocation_id in [*matching, other_currency, deallocation]:
        oes_simulator.set_status(allocation_id, "cleared")
    oes_simulator.set_status(released, "released")

    assert sorted(await run.wait_for(3)) == sorted(matching), {
        "before": before,
        "other_currency": other_currency,
        "deallocation": deallocation,
        "released": released,
    }
    await asyncio.sleep(1.5)  # several more polls: nothing again, nothing else
    assert sorted(run.ids()) == sorted(matching)
    assert before not in run.ids()
    payload = run.payloads[0]
    assert payload["enterprise_id"] == oes_simulator.enterprise_id
    assert payload["allocations"][0] == oes_simulator.get_record(payload["allocations"][0]["id"])

    queries = _list_queries(oes_simulator)
    assert queries
    for query in queries:
        assert query["statuses"] == ["cleared,released"]  # statuses are applied to the rows (shared feed)
        assert query["types"] == ["allocation"]
        assert query["currencies"] == ["ofctbtc"]
        assert query["connectionIds"] == [connection_id]
        assert query["sortField"] == ["updatedAt"]
        assert query["sortDirection"] == ["DESC"]
    await run.stop()


async def test_cleared_and_released_watchers_share_one_feed(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(feed_overlap=2)
    cleared = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.3), Accessor())
    released = Collected(
        AllocationEventTrigger(oes_conn_id=conn_id, statuses="released", poll_interval=0.3), Accessor()
    )
    await asyncio.sleep(1.0)
    feeds = [f for f in _feed.running_feeds().values() if f.conn_id == conn_id]
    assert len(feeds) == 1  # one feed, one request per interval, for both watchers
    assert feeds[0].query == _feed.DEFAULT_QUERY  # the default query: the one the deferred sensors' feed reads
    to_clear = oes_simulator.add_allocation(final_status="reserved")
    to_release = oes_simulator.add_allocation(final_status="reserved")
    oes_simulator.set_status(to_clear, "cleared")
    oes_simulator.set_status(to_release, "released")
    assert await cleared.wait_for(1) == [to_clear]
    assert await released.wait_for(1) == [to_release]
    await asyncio.sleep(0.7)
    assert cleared.ids() == [to_clear]
    assert released.ids() == [to_release]
    await cleared.stop()
    await released.stop()


async def test_permanent_api_error_keeps_the_trigger_alive_and_loud(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = make_connection(token="wrong-token", feed_overlap=2)
    run = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.1), Accessor())
    await asyncio.sleep(1.5)
    assert not run.task.done()  # ending would make Airflow restart it at once, in a loop
    assert "refuses the change feed" in caplog.text
    assert "wrong-token" not in caplog.text
    await run.stop()
