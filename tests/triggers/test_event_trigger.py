"""AllocationEventTrigger: serialization, filters, first start, and exactly-once state across restarts.

The trigger's loop (``Watcher``) runs against an in-memory change feed and state store
(``tests/triggers/_event_fakes.py``); the Airflow 3.3 shared-stream path is driven through Airflow's own
``SharedStreamManager`` the way the triggerer drives it (``test_event_trigger_shared_stream.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_oes._api import ListQuery
from airflow_provider_oes._time import parse_timestamp
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.triggers._watching import watcher as watcher_module
from airflow_provider_oes.triggers._watching.reconcile import RECONCILE_MEMORY
from airflow_provider_oes.triggers._watching.subscribe import feed_query
from airflow_provider_oes.triggers._watching.watcher import Watcher
from airflow_provider_oes.triggers._watching.window import StateStore
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import (
    OVERLAP,
    Accessor,
    Feed,
    Server,
    Subscription,
    opener,
    requires_airflow_33,
    until,
)

CLASSPATH = "airflow_provider_oes.triggers.event.AllocationEventTrigger"


# ---------------------------------------------------------------------- construction and serialization

C1 = "c0ffee00-0000-4000-8000-000000000001"
C2 = "c0ffee00-0000-4000-8000-000000000002"


@requires_airflow_33
def test_serialize_round_trip_gives_plain_json_and_the_same_trigger() -> None:
    trigger = AllocationEventTrigger(
        enterprise_id="ent1",
        oes_conn_id="oes_prod",
        statuses=["released", "cleared"],
        types="allocation",
        currencies=["ofctbtc", "ofcteth", "ofctbtc"],
        connection_ids=["c0ffee00-0000-4000-8000-000000000001"],
        poll_interval=7,
        start_time="2026-01-31T12:00:00+01:00",
    )
    classpath, kwargs = trigger.serialize()

    assert classpath == CLASSPATH
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs == {
        "enterprise_id": "ent1",
        "oes_conn_id": "oes_prod",
        "statuses": ["cleared", "released"],
        "types": ["allocation"],
        "currencies": ["ofctbtc", "ofcteth"],
        "connection_ids": ["c0ffee00-0000-4000-8000-000000000001"],
        "poll_interval": 7.0,
        "start_time": "2026-01-31T11:00:00.000000Z",
    }
    rebuilt = AllocationEventTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.state_key == trigger.state_key


@requires_airflow_33
def test_defaults_watch_cleared_from_now() -> None:
    _classpath, kwargs = AllocationEventTrigger(enterprise_id="ent1").serialize()
    assert kwargs["statuses"] == ["cleared"]
    assert kwargs["types"] is None
    assert kwargs["currencies"] is None
    assert kwargs["connection_ids"] is None
    assert kwargs["start_time"] is None
    assert kwargs["oes_conn_id"] == "oes_default"


@requires_airflow_33
def test_equivalent_filters_are_one_watcher_for_airflow() -> None:
    """Airflow identifies a watcher trigger by the hash of its kwargs: order and duplicates must not matter."""
    a = AllocationEventTrigger(enterprise_id="e", statuses=["cleared", "released"], currencies=["b", "a"])
    b = AllocationEventTrigger(enterprise_id="e", statuses=("released", "cleared", "cleared"), currencies=("a", "b"))
    assert BaseEventTrigger.hash(*a.serialize()) == BaseEventTrigger.hash(*b.serialize())
    assert a.shared_stream_key() == b.shared_stream_key()


@requires_airflow_33
def test_state_key_follows_the_stream_and_statuses_not_the_other_filters_or_the_poll_interval() -> None:
    base = AllocationEventTrigger(enterprise_id="e")
    assert AllocationEventTrigger(enterprise_id="e", poll_interval=3).state_key == base.state_key
    assert AllocationEventTrigger(enterprise_id="e", currencies=["ofctbtc"]).state_key == base.state_key
    assert AllocationEventTrigger(enterprise_id="e", types="allocation").state_key == base.state_key
    assert AllocationEventTrigger(enterprise_id="e", connection_ids=[C1]).state_key == base.state_key
    assert AllocationEventTrigger(enterprise_id="e", acknowledged_by=["settle"]).state_key == base.state_key
    assert AllocationEventTrigger(enterprise_id="e", currencies=["ofctbtc"]).legacy_state_key != base.legacy_state_key
    assert AllocationEventTrigger(enterprise_id="e", statuses="released").state_key != base.state_key
    assert AllocationEventTrigger(enterprise_id="other").state_key != base.state_key
    assert AllocationEventTrigger(enterprise_id="e", oes_conn_id="x").state_key != base.state_key
    assert AllocationEventTrigger(enterprise_id="e", start_time="2026-01-01T00:00:00Z").state_key != base.state_key


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"statuses": ["reserved"]}, "'reserved'"),
        ({"statuses": []}, "statuses must not be empty"),
        ({"statuses": ["cleared,released"]}, "'cleared,released'"),
        ({"types": ["allocations"]}, "'allocations'"),
        ({"currencies": [""]}, "''"),
        ({"currencies": [" ofctbtc"]}, "' ofctbtc'"),
        ({"connection_ids": [7]}, "7"),
        ({"poll_interval": 0}, "0"),
        ({"poll_interval": float("nan")}, "nan"),
        ({"poll_interval": True}, "True"),
        ({"start_time": "yesterday"}, "'yesterday'"),
        ({"enterprise_id": ".."}, "'..'"),
        ({"oes_conn_id": ""}, "''"),
    ],
)
@requires_airflow_33
def test_bad_arguments_fail_at_dag_parse_naming_the_value(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(OESInvalidRequestError) as info:
        AllocationEventTrigger(**{"enterprise_id": "ent1", **kwargs})
    assert named in str(info.value)


def test_airflow_without_state_store_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.2 has no asset state store and no shared-stream acknowledgements: a clear error at DAG parse."""
    monkeypatch.delattr(BaseEventTrigger, "create_shared_stream_producer", raising=False)  # as on 3.2
    with pytest.raises(OESInvalidRequestError, match=r"needs Airflow 3\.3 or later"):
        AllocationEventTrigger(enterprise_id="ent1")


# ---------------------------------------------------------------------- filters


@requires_airflow_33
def test_filters_map_onto_the_list_endpoints_query() -> None:
    trigger = AllocationEventTrigger(
        enterprise_id="e",
        statuses=["cleared", "released"],
        types=["deallocation"],
        currencies=["ofctbtc", "ofcteth"],
        connection_ids=["c0ffee00-0000-4000-8000-000000000002", "c0ffee00-0000-4000-8000-000000000001"],
    )
    assert trigger.query.filter_params() == {
        "statuses": "cleared,released",
        "types": "deallocation",
        "currencies": "ofctbtc,ofcteth",
        "connectionIds": "c0ffee00-0000-4000-8000-000000000001,c0ffee00-0000-4000-8000-000000000002",
    }
    assert AllocationEventTrigger(enterprise_id="e").query.filter_params() == {"statuses": "cleared"}
    # What the change feed sends: the same filters, and both final statuses (shared by every watcher).
    wire = feed_query(trigger.query)
    assert wire.statuses == ("cleared", "released")
    assert wire.filters() == {
        "statuses": ("cleared", "released"),
        "types": ("deallocation",),
        "currencies": ("ofctbtc", "ofcteth"),
        "connection_ids": ("c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"),
    }
    assert feed_query(AllocationEventTrigger(enterprise_id="e", statuses="released").query) == (
        feed_query(AllocationEventTrigger(enterprise_id="e").query)
    )


@requires_airflow_33
def test_local_filter_agrees_with_the_query() -> None:
    from airflow_provider_oes.models import Allocation
    from tests._factories import allocation_record

    query = ListQuery(statuses=("cleared",), types=("allocation",), currencies=("ofctbtc",), connection_ids=(C1,))

    def allocation(**overrides: Any) -> Allocation:
        return Allocation.model_validate(allocation_record(**{"status": "cleared", "connectionId": C1, **overrides}))

    assert query.matches(allocation())
    assert not query.matches(allocation(status="released"))
    assert not query.matches(allocation(status="reserved"))
    assert not query.matches(allocation(status="settled"))  # an unknown status is never final
    assert not query.matches(allocation(type="deallocation"))
    assert not query.matches(allocation(amount={"currency": "ofcteth", "quantity": "1"}))
    assert not query.matches(allocation(connectionId=C2))


# ---------------------------------------------------------------------- the watch loop


class Harness:
    """Runs one watcher (one trigger life) against a feed and a store; pulls its items one by one."""

    def __init__(self, feed: Feed, store: Accessor, trigger: AllocationEventTrigger, *, markers: bool) -> None:
        self.feed = feed
        self.watcher = Watcher(
            trigger,
            StateStore(store, trigger.state_key, trigger.legacy_state_key),
            markers=markers,
            open_subscription=opener(feed),
            clock=lambda: feed.server.now,  # the one-event-per-interval spacing follows the test's clock
        )
        self.items = self.watcher.items()
        self._subs_before = len(feed.subscriptions)

    async def subscription(self) -> Subscription:
        count = self._subs_before + 1
        return await until(lambda: len(self.feed.subscriptions) >= count and self.feed.subscriptions[-1], "subscribe")

    async def start(self) -> tuple[asyncio.Task[Any], Subscription]:
        task = asyncio.ensure_future(self.items.__anext__())
        return task, await self.subscription()

    async def started(self) -> Subscription:
        """Start the watcher and let its first poll through: on a first start it reads from the server's now,
        so that first event holds no allocation."""
        task, sub = await self.start()
        sub.poll()
        assert _ids(await task) == []
        return sub

    async def pull(self) -> tuple[dict[str, Any], Any]:
        return await asyncio.wait_for(self.items.__anext__(), 5)

    async def close(self) -> None:
        await self.items.aclose()


def _ids(item: tuple[dict[str, Any], Any]) -> list[str]:
    payload = item[0].get("event")
    return [a["id"] for a in payload["allocations"]] if payload else []


@pytest.fixture(autouse=True)
def _no_heartbeat_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Items come from the test's polls; a heartbeat would only interleave with them.
    monkeypatch.setattr(watcher_module, "HEARTBEAT_SECONDS", 1000.0)
    monkeypatch.setattr(watcher_module, "CHECKPOINT_SECONDS", 0.0)


@requires_airflow_33
async def test_first_start_begins_at_the_servers_now_and_emits_one_event_per_poll() -> None:
    server = Server()
    old = server.add()
    server.flip(old, "cleared", at=server.now - 5)  # final before the watcher started: not emitted
    trigger = AllocationEventTrigger(enterprise_id="ent1", statuses=["cleared"], poll_interval=0.001)
    store = Accessor()
    h = Harness(Feed(server), store, trigger, markers=False)
    sub = await h.started()  # nothing from before the start

    a, b, c = server.add(), server.add(), server.add()
    server.tick(1)
    server.flip(a, "cleared")
    server.flip(b, "cleared")
    server.flip(c, "released")  # not watched
    server.tick(1)
    sub.poll(pages=2)  # one poll over two pages: still one event
    item = await h.pull()
    assert sorted(_ids(item)) == sorted([a, b])
    payload = item[0]["event"]
    assert payload["enterprise_id"] == "ent1"
    assert payload["statuses"] == ["cleared"]
    assert payload["oes_conn_id"] == "oes_default"
    assert payload["allocations"][0] == server.records[payload["allocations"][0]["id"]]  # the API's JSON shape
    await h.watcher.commit(item[1])

    server.tick(1)
    sub.poll()  # a, b are in the overlap window and handed again: nothing new
    assert _ids(await h.pull()) == []
    await h.close()


@requires_airflow_33
async def test_start_time_replays_history_on_first_start() -> None:
    server = Server()
    earlier = [server.add() for _ in range(3)]
    for i, allocation_id in enumerate(earlier):
        server.flip(allocation_id, "cleared", at=server.now - 3600 + i)
    start = server.now - 3600 + 0.5  # the first one is before the start time
    from tests.triggers._event_fakes import iso

    trigger = AllocationEventTrigger(enterprise_id="ent1", start_time=iso(start), poll_interval=0.001)
    h = Harness(Feed(server), Accessor(), trigger, markers=False)
    task, sub = await h.start()
    assert sub.floor == pytest.approx(start)  # the feed reads back to the start time
    sub.poll()
    assert _ids(await task) == earlier[1:]
    await h.close()


class Restart:
    """One watch across a triggerer restart: one server, feed, state store and trigger, and two watcher lives."""

    def __init__(self) -> None:
        self.server = Server()
        self.store = Accessor()
        self.feed = Feed(self.server)
        self.trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)

    async def first_life_emits_one(self, *, lose_writes: int = 0) -> tuple[Harness, str, tuple[dict[str, Any], Any]]:
        """The first life up to the handover of its first allocation: started, one allocation cleared, its event
        pulled (not yet confirmed). ``lose_writes`` state-store writes fail from the handover on."""
        first = Harness(self.feed, self.store, self.trigger, markers=False)
        sub = await first.started()
        a = self.server.add()
        self.server.tick(1)
        self.server.flip(a, "cleared")
        sub.poll()
        self.store.fail_next_writes = lose_writes
        item = await first.pull()
        assert _ids(item) == [a]
        return first, a, item

    async def second_life_emits(self, trigger: AllocationEventTrigger | None = None) -> list[str]:
        """After the restart, a new watcher on the same state store: the ids of its first event."""
        second = Harness(self.feed, self.store, trigger or self.trigger, markers=False)
        task, sub = await second.start()
        sub.poll()  # reads back to the stored floor
        emitted = _ids(await task)
        await second.close()
        return emitted


@requires_airflow_33
async def test_restart_after_confirmed_event_emits_nothing_twice_and_misses_nothing() -> None:
    restart = Restart()
    first, _a, item = await restart.first_life_emits_one()
    await first.watcher.commit(item[1])
    await first.close()  # the triggerer dies here

    server = restart.server
    b = server.add()
    server.tick(2)
    server.flip(b, "cleared")  # while no triggerer runs
    server.tick(5)

    # a (already emitted) is read again, b is new; the trigger as Airflow rebuilds it from its serialized form.
    assert await restart.second_life_emits(AllocationEventTrigger(**restart.trigger.serialize()[1])) == [b]


@requires_airflow_33
async def test_crash_after_handover_before_confirmation_emits_again_and_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    restart = Restart()
    first, a, _item = await restart.first_life_emits_one()
    stored = restart.store.values[restart.trigger.state_key]
    assert stored["inflight"] == [a]  # written before the handover
    assert a not in stored["emitted"]  # not claimed: Airflow has not confirmed storing the event
    await first.close()  # crash: no confirmation, no commit

    caplog.clear()
    assert await restart.second_life_emits() == [a]  # at least once: emitted again
    assert f"handed allocations {a} to Airflow but stopped before Airflow confirmed" in caplog.text


@requires_airflow_33
async def test_crash_before_handover_emits_on_restart() -> None:
    """The in-flight write is made; the triggerer dies before the yield: the allocation is emitted later."""
    restart = Restart()
    first, a, _item = await restart.first_life_emits_one(lose_writes=1)  # even the in-flight write is lost
    await first.close()

    assert await restart.second_life_emits() == [a]


@requires_airflow_33
async def test_polls_within_one_interval_make_one_event() -> None:
    """Several polls inside one poll interval (a feed shared with a faster subscriber): one event, later."""
    server = Server()
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=10)
    h = Harness(Feed(server), Accessor(), trigger, markers=False)
    sub = await h.started()
    a, b = server.add(), server.add()
    server.tick(10)
    server.flip(a, "cleared")
    sub.poll()
    item = await h.pull()
    assert _ids(item) == [a]
    await h.watcher.commit(item[1])
    server.tick(2)
    server.flip(b, "cleared")
    sub.poll()
    held = await h.pull()
    assert _ids(held) == []
    # The floor may be written meanwhile, but it claims nothing of b: a restart now reads b again.
    assert b not in held[1].snapshot["emitted"]
    assert parse_timestamp(held[1].snapshot["floor"]) <= parse_timestamp(server.records[b]["updatedAt"])
    server.tick(8)
    sub.poll()
    assert _ids(await h.pull()) == [b]
    await h.close()


@requires_airflow_33
async def test_window_stays_bounded_by_the_overlap() -> None:
    server = Server()
    store = Accessor()
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)
    h = Harness(Feed(server), store, trigger, markers=False)
    sub = await h.started()
    emitted = []
    for _ in range(100):  # 1,000 s: beyond the overlap and the reconciliation's memory
        allocation_id = server.add()
        server.tick(10)
        server.flip(allocation_id, "cleared")
        sub.poll()
        item = await h.pull()
        emitted += _ids(item)
        await h.watcher.commit(item[1])
    stored = store.values[trigger.state_key]
    assert emitted == list(server.records)  # every one, once, in order
    # Only ids within the overlap (30 s) plus the reconciliation's memory (600 s) of the last watermark are
    # remembered: 10 s apart, so at most 64 of the 100.
    assert 1 <= len(stored["emitted"]) <= (OVERLAP + RECONCILE_MEMORY.total_seconds()) / 10 + 1
    await h.close()


@requires_airflow_33
async def test_unreadable_state_store_is_retried_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    server = Server()
    store = Accessor()
    store.fail_next_reads = 3
    trigger = AllocationEventTrigger(enterprise_id="ent1", poll_interval=0.001)
    feed = Feed(server)
    watcher = Watcher(
        trigger, StateStore(store, trigger.state_key), markers=False, open_subscription=opener(feed), sleep=fake_sleep
    )
    items = watcher.items()
    task = asyncio.ensure_future(items.__anext__())
    sub = await until(lambda: feed.subscriptions and feed.subscriptions[-1], "subscribe")
    sub.poll()
    assert _ids(await task) == []
    assert sleeps == [2.0, 4.0, 8.0]  # backoff, then it carried on
    await items.aclose()


@requires_airflow_33
def test_state_keys_survive_upgrades() -> None:
    """A watcher's state lives in Airflow's DB under this key: a new version computing another key would start
    a deployed watcher afresh (re-emitting or skipping allocations). The legacy keys below are those of 0.1.0
    (read once and moved); the others those of this version."""
    plain = AllocationEventTrigger(enterprise_id="ent1")
    assert plain.legacy_state_key == "oes_allocation_events_bcb6735467227d0c3b6e"
    assert plain.state_key == "oes_allocation_events/4fe49b463d0edc932e83"
    edited = AllocationEventTrigger(
        enterprise_id="e",
        statuses=["released", "cleared"],
        types="deallocation",
        currencies=["ofcteth", "ofctbtc"],
        connection_ids=[C2, C1],
        start_time="2026-01-01T00:00:00Z",
        poll_interval=3,
    )
    assert edited.legacy_state_key == "oes_allocation_events_0b1a1a050a709cd0f219"
    assert (
        edited.state_key
        == AllocationEventTrigger(
            enterprise_id="e", statuses=["cleared", "released"], start_time="2026-01-01T00:00:00Z"
        ).state_key
    )
