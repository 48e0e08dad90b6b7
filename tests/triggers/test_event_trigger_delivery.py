"""Issue 20 on the watcher with an in-memory feed and state store, the server's clock moved by the test: edits
keep the floor, acknowledged delivery re-emits what no run acknowledged (an unlinked trigger's confirmed event
included), and a backlog goes out in capped events.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_oes._acks import ACK_RETENTION, ack_key, ack_value, delivery_key
from airflow_provider_oes.triggers._watching import watcher as watcher_module
from airflow_provider_oes.triggers._watching.watcher import Watcher
from airflow_provider_oes.triggers._watching.window import StateStore
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, Feed, Server, opener, requires_airflow_33, until

pytestmark = requires_airflow_33


@pytest.fixture(autouse=True)
def _no_heartbeat_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher_module, "HEARTBEAT_SECONDS", 1000.0)
    monkeypatch.setattr(watcher_module, "CHECKPOINT_SECONDS", 0.0)


class Life:
    """One trigger life on a feed and a store; the watcher's clocks are the server's."""

    def __init__(self, feed: Feed, store: Accessor, trigger: AllocationEventTrigger) -> None:
        self.feed = feed
        self.store = store
        self.watcher = Watcher(
            trigger,
            StateStore(store, trigger.state_key, trigger.legacy_state_key),
            markers=False,
            open_subscription=opener(feed),
            clock=lambda: feed.server.now,
            wall=lambda: feed.server.now,
        )
        self.items = self.watcher.items()
        self._count = len(feed.subscriptions) + 1

    async def start(self) -> Any:
        task = asyncio.ensure_future(self.items.__anext__())
        sub = await until(lambda: len(self.feed.subscriptions) >= self._count and self.feed.subscriptions[-1], "sub")
        return task, sub

    async def poll(self, sub: Any, *, confirm: bool = True) -> list[dict[str, Any]]:
        """One poll; the allocations of its item (confirmed by "Airflow" unless told otherwise)."""
        sub.poll()
        item, commit = await asyncio.wait_for(self.items.__anext__(), 5)
        if confirm and commit is not None:
            await self.watcher.commit(commit)
        return (item.get("event") or {}).get("allocations", [])

    async def close(self) -> None:
        await self.items.aclose()


def _ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


async def _first_item(life: Life, sub: Any, task: Any) -> None:
    sub.poll()
    item, commit = await task
    assert not item.get("event")
    await life.watcher.commit(commit)


async def test_editing_the_filters_continues_from_the_stored_floor() -> None:
    server, store = Server(), Accessor()
    feed = Feed(server)
    first = Life(feed, store, AllocationEventTrigger(enterprise_id="ent1", poll_interval=1))
    task, sub = await first.start()
    await _first_item(first, sub, task)
    a = server.add()
    server.tick(2)
    server.flip(a, "cleared")
    assert _ids(await first.poll(sub)) == [a]
    await first.close()  # the DAG file is edited: Airflow cancels this trigger ...

    gap = server.add()
    server.tick(60)
    server.flip(gap, "cleared")  # ... and this clears before the edited watcher starts
    server.tick(60)
    edited = AllocationEventTrigger(enterprise_id="ent1", currencies=["ofctbtc"], poll_interval=5)
    second = Life(feed, store, edited)
    task, sub = await second.start()
    sub.poll()
    item, _commit = await task
    assert _ids(item["event"]["allocations"]) == [gap]  # from the stored floor, not from "now"
    await second.close()


async def test_a_state_under_the_old_key_is_moved_and_the_old_key_removed() -> None:
    server, store = Server(), Accessor()
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=1)
    old = {"v": 1, "floor": "2027-01-15T07:59:00Z", "emitted": {}, "inflight": []}
    store.values[trigger.legacy_state_key] = old
    a = server.add()
    server.tick(1)
    server.flip(a, "cleared")
    life = Life(Feed(server), store, trigger)
    task, sub = await life.start()
    sub.poll()
    item, commit = await task
    assert _ids(item["event"]["allocations"]) == [a]  # read from the old key's floor
    await life.watcher.commit(commit)
    assert trigger.state_key in store.values
    assert trigger.legacy_state_key not in store.values
    await life.close()


def _acked(store: Accessor, consumer: str, record: dict[str, Any]) -> None:
    key = delivery_key(record)
    assert key is not None
    store.values[ack_key(consumer, key)] = ack_value("run-1")


async def test_an_event_confirmed_for_an_unlinked_trigger_is_emitted_again_until_acknowledged() -> None:
    """Airflow confirms the event of a trigger a pause unlinked from its asset: no asset event, no run. With
    ``acknowledged_by``, the watcher emits the identical record again once ``redeliver_after`` passed."""
    server, store = Server(), Accessor()
    trigger = AllocationEventTrigger(
        enterprise_id="ent1", poll_interval=1, acknowledged_by=["settle"], redeliver_after=600, max_redeliveries=3
    )
    life = Life(Feed(server), store, trigger)
    task, sub = await life.start()
    await _first_item(life, sub, task)
    a = server.add()
    server.tick(2)
    server.flip(a, "cleared")
    first = await life.poll(sub)  # confirmed: what submit_event does for an unlinked trigger
    assert _ids(first) == [a]
    server.tick(300)
    assert await life.poll(sub) == []  # not yet
    server.tick(301)
    again = await life.poll(sub)
    assert again == first  # the identical record (same id, status, updatedAt)
    assert life.watcher.redelivery is not None
    assert life.watcher.redelivery.redelivered == 1

    _acked(store, "settle", first[0])  # a run of the settle DAG took it on
    server.tick(601)
    assert await life.poll(sub) == []
    server.tick(601)
    assert await life.poll(sub) == []  # acknowledged: never again
    key = delivery_key(first[0])
    assert key is not None
    assert ack_key("settle", key) in store.values
    server.tick(ACK_RETENTION.total_seconds() + 1)
    await life.poll(sub)
    assert ack_key("settle", key) not in store.values  # the watcher deletes the acknowledgement after retention
    ledger = store.values[f"{trigger.state_key}/deliveries"]
    assert ledger["entries"] == {}  # and forgets the delivery: the state stays bounded by time
    await life.close()


async def test_unacknowledged_allocations_are_emitted_again_then_given_up_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, store = Server(), Accessor()
    trigger = AllocationEventTrigger(
        enterprise_id="ent1",
        poll_interval=1,
        acknowledged_by=["settle", "audit"],
        redeliver_after=60,
        max_redeliveries=2,
    )
    life = Life(Feed(server), store, trigger)
    task, sub = await life.start()
    await _first_item(life, sub, task)
    a, b = server.add(), server.add()
    server.tick(2)
    server.flip(a, "cleared")
    server.flip(b, "cleared")
    emitted = await life.poll(sub)
    assert sorted(_ids(emitted)) == sorted([a, b])
    record_a = next(r for r in emitted if r["id"] == a)
    _acked(store, "settle", record_a)
    _acked(store, "audit", record_a)  # a: both consumers acknowledged
    record_b = next(r for r in emitted if r["id"] == b)
    _acked(store, "settle", record_b)  # b: only one of the two
    counts = []
    for _ in range(4):
        server.tick(61)
        counts.append(_ids(await life.poll(sub)))
    assert counts == [[b], [b], [], []]  # b twice more (max_redeliveries), a never
    assert f"Allocation {b} (cleared) was emitted 3 times" in caplog.text
    await life.close()


async def test_a_restart_keeps_the_deliveries_to_check() -> None:
    server, store = Server(), Accessor()
    trigger = AllocationEventTrigger(
        enterprise_id="ent1", poll_interval=1, acknowledged_by=["settle"], redeliver_after=60
    )
    feed = Feed(server)
    first = Life(feed, store, trigger)
    task, sub = await first.start()
    await _first_item(first, sub, task)
    a = server.add()
    server.tick(2)
    server.flip(a, "cleared")
    assert _ids(await first.poll(sub)) == [a]
    await first.close()
    server.tick(61)
    second = Life(feed, store, trigger)
    task, sub = await second.start()
    sub.poll()
    item, _commit = await task
    assert _ids(item["event"]["allocations"]) == [a]  # the ledger survived the restart
    await second.close()


async def test_a_backlog_goes_out_in_capped_events_one_per_poll_interval_and_a_restart_loses_none() -> None:
    server, store = Server(), Accessor()
    feed = Feed(server)
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=5, max_allocations_per_event=40)
    life = Life(feed, store, trigger)
    task, sub = await life.start()
    await _first_item(life, sub, task)
    ids = [server.add() for _ in range(100)]
    server.tick(5)
    for allocation_id in ids:
        server.flip(allocation_id, "cleared")
    sizes = [len(await life.poll(sub))]
    server.tick(1)
    sizes.append(len(await life.poll(sub)))  # within the interval: nothing (burst-safe spacing)
    server.tick(4)
    sizes.append(len(await life.poll(sub)))
    assert sizes == [40, 0, 40]
    await life.close()  # the triggerer stops with 20 still to go
    second = Life(feed, store, trigger)
    task, sub = await second.start()
    sub.poll()
    item, _commit = await task
    assert sorted(_ids(item["event"]["allocations"])) == sorted(ids[80:])  # the 20 held back, and only they
    await second.close()
