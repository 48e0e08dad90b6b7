"""The settlement watcher's no-loss cases against the simulator, its clock moved rather than waited: restart,
pause, burst, settlements without transfers, re-emission of unacknowledged deliveries, hostile records."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes._acks import ack_key, ack_value, delivery_key
from airflow_provider_oes.triggers._settlement_watch import source
from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger
from tests.triggers._event_fakes import Accessor, requires_airflow_33
from tests.triggers._settlement_watching import Watching

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, requires_airflow_33]


@pytest.fixture(autouse=True)
def _server_clock_back(oes_simulator: OESSimulator) -> Iterator[None]:
    oes_simulator.set_clock_offset(0.0)
    yield
    oes_simulator.set_clock_offset(0.0)


def _trigger(sim: OESSimulator, conn_id: str, **kwargs: object) -> SettlementEventTrigger:
    return SettlementEventTrigger(enterprise_id=sim.enterprise_id, oes_conn_id=conn_id, poll_interval=0.1, **kwargs)


async def _started(watching: Watching) -> None:
    """The first poll fixed "now" (whole seconds of the server's Date) and was stored: later changes are after it."""
    for _ in range(200):
        if watching.trigger.asset_state_store.values:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.1)


async def test_a_restarted_watcher_loses_nothing_and_repeats_nothing(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    store = Accessor()
    first = Watching(_trigger(sim, conn_id, statuses=["completed"]), store)
    await _started(first)
    ids = [sim.add_settlement(final_status="pending") for _ in range(5)]
    for settlement_id in ids[:3]:
        sim.set_settlement_status(settlement_id, "completed")
    await first.wait_for(3)
    await asyncio.sleep(0.5)  # the state is written once the next item is asked for
    await first.stop()
    for settlement_id in ids[3:]:
        sim.set_settlement_status(settlement_id, "completed")
    kwargs = first.trigger.serialize()[1]
    second = Watching(SettlementEventTrigger(**kwargs), store)
    await second.wait_for(2)
    await asyncio.sleep(1.0)
    await second.stop()
    assert sorted(first.emitted()) == sorted((i, "completed") for i in ids[:3])
    assert sorted(second.emitted()) == sorted((i, "completed") for i in ids[3:])  # nothing lost, nothing repeated


async def test_a_20_minute_pause_delivers_every_change_after_it(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = oes_simulator
    monkeypatch.setattr(source, "SCAN_SECONDS", 0.5)
    conn_id = make_connection(feed_overlap=2, feed_page_size=7)
    store = Accessor()
    watching = Watching(_trigger(sim, conn_id, statuses=["completed", "failed"]), store)
    await _started(watching)
    await watching.stop()  # paused
    ids = [sim.add_settlement(final_status="pending") for _ in range(30)]
    bare = [sim.add_settlement(final_status="pending", transfers=[]) for _ in range(4)]
    retried = sim.add_settlement(final_status="pending")
    offset = 0.0
    for settlement_id in [*ids, *bare]:  # 34 changes over 17 minutes of server time
        offset += 30.0
        sim.set_clock_offset(offset)
        sim.set_settlement_status(settlement_id, "completed")
    sim.set_clock_offset(offset + 180.0)  # 20 minutes after the pause began
    sim.set_settlement_status(retried, "failed")
    resumed = Watching(_trigger(sim, conn_id, statuses=["completed", "failed"]), store)
    await resumed.wait_for(35, timeout=20)
    await asyncio.sleep(1.0)
    await resumed.stop()
    expected = [*((i, "completed") for i in [*ids, *bare]), (retried, "failed")]
    assert sorted(resumed.emitted()) == sorted(expected)
    assert len(resumed.emitted()) == 35


async def test_a_burst_larger_than_the_cap_goes_out_oldest_first_in_capped_events(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2, feed_page_size=5)
    watching = Watching(_trigger(sim, conn_id, max_settlements_per_event=4), Accessor())
    await _started(watching)
    ids = []
    for _ in range(11):
        ids.append(sim.add_settlement(final_status="pending"))
        await asyncio.sleep(0.002)  # distinct updatedAt (milliseconds)
    await watching.wait_for(11)
    await asyncio.sleep(0.5)
    await watching.stop()
    sizes = [len(p["settlements"]) for p in watching.payloads]
    assert max(sizes) == 4
    assert sum(sizes) == 11
    emitted = [s["id"] for s in watching.settlements()]
    assert sorted(emitted) == sorted(ids)
    stamps = [s["updatedAt"] for s in watching.settlements()]
    assert stamps == sorted(stamps)  # oldest first, across events


async def test_settlements_without_transfers_are_caught_by_the_list_scan(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = oes_simulator
    monkeypatch.setattr(source, "SCAN_SECONDS", 0.5)
    conn_id = make_connection(feed_overlap=2)
    watching = Watching(_trigger(sim, conn_id, statuses=["pending", "completed"]), Accessor())
    await _started(watching)
    bare = sim.add_settlement(final_status="pending", transfers=[])
    await watching.wait_for(1, timeout=10)
    sim.set_settlement_status(bare, "completed")
    await watching.wait_for(2, timeout=10)
    await asyncio.sleep(1.2)  # more scans: nothing again
    await watching.stop()
    assert watching.emitted() == [(bare, "pending"), (bare, "completed")]


async def test_unacknowledged_deliveries_are_emitted_again_and_acknowledged_ones_are_not(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    store = Accessor()
    watching = Watching(
        _trigger(sim, conn_id, acknowledged_by=["review"], redeliver_after=0.5, max_redeliveries=2), store
    )
    await _started(watching)
    acked, unacked = sim.add_settlement(final_status="pending"), sim.add_settlement(final_status="pending")
    await watching.wait_for(2)
    for record in watching.settlements():
        if record["id"] == acked:
            key = delivery_key(record)
            assert key is not None
            store.values[ack_key("review", key)] = ack_value("run-1")
    await watching.wait_for(3, timeout=10)
    await asyncio.sleep(2.0)
    await watching.stop()
    counts = {i: [k for k, _ in watching.emitted()].count(i) for i in (acked, unacked)}
    assert counts[acked] == 1
    assert counts[unacked] == 3  # the first emission and max_redeliveries re-emissions
    again = [s for p in watching.payloads[1:] for s in p["settlements"]]
    assert all("disputeWindowEndsAt" in s for s in again)


async def test_an_invalid_settlement_record_is_skipped_and_the_others_still_delivered(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    sim = oes_simulator
    conn_id = make_connection(feed_overlap=2)
    watching = Watching(_trigger(sim, conn_id), Accessor())
    await _started(watching)
    hostile = sim.add_settlement(final_status="pending", extra_fields={"reconciled": "yes", "status": "pending"})
    good = sim.add_settlement(final_status="pending")
    await watching.wait_for(1)
    await asyncio.sleep(1.0)
    await watching.stop()
    assert watching.emitted() == [(good, "pending")]
    skipped = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert skipped
    assert all(hostile in message and "reconciled" in message for message in skipped)  # loudly, naming it
