"""SettlementEventTrigger on Airflow 3.3's ack-mode shared stream, against the simulator: the state moves past
an event only once Airflow confirmed storing it; an event never confirmed comes again from the next trigger."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger
from tests.triggers._event_fakes import Accessor, until

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="Airflow 3.3 shared streams")
pytestmark = pytest.mark.integration


class StreamRun:
    """One trigger instance run the way the 3.3 triggerer runs a shared-stream trigger."""

    def __init__(self, manager: Any, trigger: SettlementEventTrigger, trigger_id: int, store: Accessor) -> None:
        self.manager = manager
        self.trigger = trigger
        trigger.asset_state_store = store
        self.trigger_id = trigger_id
        self.key = trigger.shared_stream_key()
        self.events: list[tuple[dict[str, Any], int | None]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        stream = self.manager.subscribe(trigger_id=self.trigger_id, trigger=self.trigger, key=self.key)
        try:
            async for event in self.trigger.filter_shared_stream(stream):
                seq = self.manager.bind_pending_event(trigger_id=self.trigger_id, key=self.key)
                self.events.append((event.payload, seq))
        finally:
            await self.manager.unsubscribe(self.trigger_id, self.key)

    def ids(self) -> list[str]:
        return [s["id"] for payload, _seq in self.events for s in payload["settlements"]]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _stored(store: Accessor, trigger: SettlementEventTrigger) -> dict[str, Any]:
    return dict(store.values.get(trigger.state_key) or {})


async def test_the_state_waits_for_airflows_confirmation_and_an_unconfirmed_event_comes_again(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    store = Accessor()
    trigger = SettlementEventTrigger(
        enterprise_id=sim.enterprise_id, oes_conn_id=conn_id, statuses=["completed"], poll_interval=0.1
    )
    run = StreamRun(shared_stream.SharedStreamManager(ack_timeout=1.0), trigger, 1, store)
    await until(lambda: _stored(store, trigger), "the first state", timeout=10)
    await asyncio.sleep(1.1)
    confirmed, unconfirmed = sim.add_settlement(final_status="pending"), sim.add_settlement(final_status="pending")
    sim.set_settlement_status(confirmed, "completed")
    await until(lambda: run.events, "the event", timeout=10)
    assert run.ids() == [confirmed]
    await until(lambda: _stored(store, trigger).get("inflight"), "in flight", timeout=5)
    assert not any(k.startswith(confirmed) for k in _stored(store, trigger)["emitted"])
    run.manager.confirm_persisted([run.events[0][1]])  # the supervisor stored the asset event
    await until(
        lambda: any(k.startswith(confirmed) for k in _stored(store, trigger).get("emitted", {})), "commit", timeout=5
    )
    assert _stored(store, trigger)["inflight"] == []

    sim.set_settlement_status(unconfirmed, "completed")
    await until(lambda: len(run.events) == 2, "the second event", timeout=10)
    await asyncio.wait_for(asyncio.gather(run.task, return_exceptions=True), 10)  # never confirmed: ack timeout
    assert isinstance(run.task.exception(), shared_stream.AckTimeout)

    rebuilt = SettlementEventTrigger(**trigger.serialize()[1])  # Airflow re-creates the trigger
    run2 = StreamRun(shared_stream.SharedStreamManager(), rebuilt, 2, store)
    await until(lambda: run2.events, "the event again", timeout=10)
    await asyncio.sleep(0.5)
    await run2.stop()
    assert run2.ids() == [unconfirmed]  # at least once for the unconfirmed one; the confirmed one not again
