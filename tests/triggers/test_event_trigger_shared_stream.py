"""The Airflow 3.3 path: the watcher as an ack-mode shared stream, driven by Airflow's own SharedStreamManager.

``_run_trigger`` below does what ``TriggerRunner.run_trigger`` does for a shared-stream trigger: subscribe,
run ``filter_shared_stream``, and bind each event to a persist-confirmation seq. The test plays the
supervisor: it confirms a seq (``confirm_persisted``) when it "stores" the event. The state must move past an
event only after that confirmation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_oes.triggers._watching import watcher as watcher_module
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, Feed, Server, Subscription, opener, until

shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="Airflow 3.3 shared streams")


class TriggerRun:
    """One trigger instance run the way the 3.3 triggerer runs a shared-stream trigger."""

    def __init__(self, manager: Any, trigger: AllocationEventTrigger, trigger_id: int, store: Accessor) -> None:
        self.manager = manager
        self.trigger = trigger
        trigger.asset_state_store = store  # what the triggerer injects for a watcher (one asset: the accessor)
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

    def ids(self) -> list[list[str]]:
        return [[a["id"] for a in payload["allocations"]] for payload, _seq in self.events]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[Server, Feed, Accessor]:
    server = Server()
    feed = Feed(server)
    monkeypatch.setattr(watcher_module, "open_feed_subscription", opener(feed))
    return server, feed, Accessor()


async def _subscribed(
    world: tuple[Server, Feed, Accessor], manager: Any, trigger: AllocationEventTrigger, trigger_id: int
) -> tuple[TriggerRun, Subscription]:
    """Run ``trigger`` as the triggerer does; return the run and the feed subscription it made (one more)."""
    _server, feed, store = world
    count = len(feed.subscriptions) + 1
    run = TriggerRun(manager, trigger, trigger_id, store)
    sub = await until(lambda: len(feed.subscriptions) == count and feed.subscriptions[-1], f"feed subscription {count}")
    return run, sub


def _stored(store: Accessor, trigger: AllocationEventTrigger) -> dict[str, Any]:
    return dict(store.values.get(trigger.state_key) or {})


async def test_state_moves_past_an_event_only_after_airflow_confirms_storing_it(
    world: tuple[Server, Feed, Accessor],
) -> None:
    server, _feed, store = world
    manager = shared_stream.SharedStreamManager()
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)
    run, sub = await _subscribed(world, manager, trigger, 1)
    sub.poll()
    a, b = server.add(), server.add()
    server.tick(1)
    server.flip(a, "cleared")
    server.flip(b, "cleared")
    sub.poll()

    await until(lambda: run.events, "the event")
    assert run.ids() == [[a, b]]
    seq = run.events[0][1]
    assert seq is not None  # ack mode: the event is bound to a persist confirmation
    await asyncio.sleep(0.1)
    stored = _stored(store, trigger)
    assert stored["inflight"] == sorted([a, b])
    assert a not in stored["emitted"]
    assert b not in stored["emitted"]

    manager.confirm_persisted([seq])  # the supervisor stored the asset event
    stored = await until(lambda: b in _stored(store, trigger).get("emitted", {}) and _stored(store, trigger), "commit")
    assert a in stored["emitted"]
    assert stored["inflight"] == []
    await run.stop()

    # A restarted trigger (new triggerer: new manager, new instance from the kwargs) emits nothing again.
    manager2 = shared_stream.SharedStreamManager()
    run2, sub2 = await _subscribed(world, manager2, AllocationEventTrigger(**trigger.serialize()[1]), 7)
    c = server.add()
    server.tick(1)
    server.flip(c, "cleared")
    sub2.poll()  # hands a, b (inside the overlap) and c
    await until(lambda: run2.events, "the event after restart")
    assert run2.ids() == [[c]]
    await run2.stop()


async def test_an_event_airflow_never_confirms_is_emitted_again_by_the_next_trigger(
    world: tuple[Server, Feed, Accessor],
) -> None:
    server, _feed, store = world
    manager = shared_stream.SharedStreamManager(ack_timeout=0.3)
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)
    run, sub = await _subscribed(world, manager, trigger, 1)
    sub.poll()
    a = server.add()
    server.tick(1)
    server.flip(a, "cleared")
    sub.poll()
    await until(lambda: run.events, "the event")
    # No confirmation: Airflow's ack timeout fails the subscriber; the trigger ends with the error.
    await asyncio.wait_for(asyncio.gather(run.task, return_exceptions=True), 5)
    assert isinstance(run.task.exception(), shared_stream.AckTimeout)
    assert a not in _stored(store, trigger).get("emitted", {})

    # Airflow re-creates the trigger: the allocation comes again (at least once, never lost).
    rebuilt = AllocationEventTrigger(**trigger.serialize()[1])
    run2, sub2 = await _subscribed(world, shared_stream.SharedStreamManager(), rebuilt, 2)
    sub2.poll()
    await until(lambda: run2.events, "the event again")
    assert run2.ids() == [[a]]
    await run2.stop()


async def test_quiet_stream_keeps_moving_so_airflow_never_times_the_watcher_out(
    world: tuple[Server, Feed, Accessor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing changing (or the feed failing and backing off), items still come within the ack timeout."""
    monkeypatch.setattr(watcher_module, "HEARTBEAT_SECONDS", 0.05)
    server = world[0]
    manager = shared_stream.SharedStreamManager(ack_timeout=0.5)
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)
    run, sub = await _subscribed(world, manager, trigger, 1)
    sub.poll()
    await asyncio.sleep(1.5)  # three ack timeouts without any poll
    assert not run.task.done()
    a = server.add()
    server.tick(1)
    server.flip(a, "cleared")
    sub.poll()
    await until(lambda: run.events, "the event")
    assert run.ids() == [[a]]
    await run.stop()
