"""Helpers of the trigger and poller tests: build a trigger, run it like the triggerer, wait for a state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._time import format_timestamp
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

LIST_SUFFIX = "/clients/allocations"


def make_trigger(
    sim: OESSimulator, allocation_id: str, conn_id: str, poll_interval: float = 0.05, **kw: Any
) -> AllocationStatusTrigger:
    """A trigger for ``allocation_id`` under the simulator's enterprise (or ``enterprise_id=...``)."""
    return AllocationStatusTrigger(
        allocation_id=allocation_id,
        enterprise_id=kw.get("enterprise_id", sim.enterprise_id),
        oes_conn_id=conn_id,
        poll_interval=poll_interval,
    )


async def first_event(trigger: AllocationStatusTrigger, timeout: float = 20) -> dict[str, Any]:
    """Run the trigger like the triggerer does and return the payload of its (only) event."""
    events = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    await asyncio.wait_for(consume(), timeout)
    assert len(events) == 1, events
    return events[0]


class TriggerFleet:
    """Status triggers of one connection and enterprise, each run as the triggerer runs it; their events by id.

    :param enterprise_id: The triggers' enterprise.
    :param conn_id: The triggers' connection.
    :param interval: Their poll interval, unless :meth:`start` names another.
    :param wait_timeout: How long :meth:`wait_for` waits unless told otherwise, in seconds.
    """

    def __init__(self, enterprise_id: str, conn_id: str, interval: float, *, wait_timeout: float = 10) -> None:
        self.enterprise_id, self.conn_id, self.interval = enterprise_id, conn_id, interval
        self.wait_timeout = wait_timeout
        self.events: dict[str, dict[str, Any]] = {}
        """The last event payload of each trigger, by allocation id."""
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, allocation_id: str, last_check: float | None = None, interval: float | None = None) -> None:
        """Start a trigger for ``allocation_id``; ``last_check`` is the sensor's last check (server epoch s)."""
        trigger = AllocationStatusTrigger(
            allocation_id,
            self.enterprise_id,
            self.conn_id,
            self.interval if interval is None else interval,
            last_check=None if last_check is None else format_timestamp(last_check),
        )

        async def run() -> None:
            async for event in trigger.run():
                self.events[allocation_id] = event.payload

        self.tasks.append(asyncio.ensure_future(run()))

    async def wait_for(self, ids: list[str], timeout: float | None = None) -> None:
        """Wait until every one of ``ids`` has had an event (fails after ``timeout``, default ``wait_timeout``)."""

        async def done() -> None:
            while not all(i in self.events for i in ids):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(done(), self.wait_timeout if timeout is None else timeout)

    async def close(self) -> None:
        """Cancel every trigger, as the triggerer does when its task is done or gone."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.sleep(0.02)


def list_requests(sim: OESSimulator) -> list[tuple[str, str, str, float]]:
    """The list-endpoint requests the simulator saw."""
    return [r for r in sim.requests if r[1].endswith(LIST_SUFFIX)]


def single_requests(sim: OESSimulator) -> list[tuple[str, str, str, float]]:
    """The single-GET requests the simulator saw."""
    return [r for r in sim.requests if not r[1].endswith(LIST_SUFFIX)]


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Let the event loop run until ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds.

    Tests wait for the state they check instead of counting loop turns or sleeping a fixed time: how many
    turns a cancelled poller needs to stop differs between Python versions (3.12's ``asyncio.wait_for`` no
    longer runs its coroutine in a separate task) and under load.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.005)


async def wait_idle(timeout: float = 10.0) -> None:
    """Wait until nothing of the shared poller is left in this loop: no pollers, no open clients."""
    clients = list(connections.active_clients().values())
    await wait_for(
        lambda: not polling.running_pollers() and not connections.active_clients(),
        "the shared pollers to stop and their connections to close",
        timeout,
    )
    await wait_for(lambda: all(c.is_closed for c in clients), "the HTTP clients to close", timeout)
    assert polling.running_pollers() == {}
    assert connections.active_clients() == {}
