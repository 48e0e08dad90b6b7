"""AllocationEventTrigger's metrics over real StatsD (UDP on 127.0.0.1): the asset watchers' events, delays,
watcher gauge, and the connection's request metrics and rate-limit gauges they send when no poller does.

Airflow's StatsD metrics are switched on the way a deployment does it (``AIRFLOW__METRICS__*``); the watchers
run in one event loop as in a triggerer, first against an in-memory feed (exact values), then against the
simulator with a 429 and a dropped connection, both retried, alone and beside a deferred sensor's trigger
that shares the feed and its client (nothing counted twice).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes import _metrics
from airflow_provider_oes._metrics import reporters as metric_reporters
from airflow_provider_oes.triggers import _feed
from airflow_provider_oes.triggers._watching import watcher as watcher_module
from airflow_provider_oes.triggers._watching.metrics import metric_groups
from airflow_provider_oes.triggers._watching.watcher import Watcher
from airflow_provider_oes.triggers._watching.window import StateStore
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from airflow_provider_oes.triggers.event import AllocationEventTrigger
from tests.triggers._event_fakes import Accessor, Feed, Server, opener, requires_airflow_33

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests._statsd import Metric, StatsdListener

pytestmark = requires_airflow_33

P = "airflow.oes."


def _sum(metrics: list[Metric], name: str) -> float:
    return sum(m.value for m in metrics if m.name == name)


def _gauge(metrics: list[Metric], name: str) -> list[float]:
    assert all(m.kind == "g" for m in metrics if m.name == name), name
    return [m.value for m in metrics if m.name == name]


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------- exact values, in-memory feed


async def test_each_emitted_allocation_is_counted_and_timed_and_the_watcher_gauge_follows(
    statsd_metrics: Callable[..., StatsdListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = statsd_metrics(tags="influxdb")
    monkeypatch.setattr(metric_reporters, "FLUSH_PERIOD", 0.0)
    monkeypatch.setattr(watcher_module, "HEARTBEAT_SECONDS", 1000.0)
    # The server's clock runs 5 s behind this machine's: each allocation is seconds old when it is emitted.
    server = Server(now=time.time() - 5.0)
    feed = Feed(server)
    trigger = AllocationEventTrigger(enterprise_id="ent1", oes_conn_id="oes_w", statuses=["cleared", "released"])
    watcher = Watcher(
        trigger,
        StateStore(Accessor(), trigger.state_key),
        markers=False,
        open_subscription=opener(feed),
        clock=lambda: server.now,
    )
    items = watcher.items()
    first = asyncio.ensure_future(items.__anext__())
    sub = await _until(lambda: feed.subscriptions and feed.subscriptions[-1], "subscribe")
    sub.poll()
    assert (await asyncio.wait_for(first, 5))[0]["event"] is None  # the first poll fixes "now"
    # The watcher joined: the gauge says 1 before anything was emitted.
    listener.wait_for(lambda ms: _gauge(ms, P + "watchers") == [1.0])

    cleared = [server.add() for _ in range(3)]
    released = [server.add() for _ in range(2)]
    server.tick(1)
    for allocation_id in cleared:
        server.flip(allocation_id, "cleared")
    for allocation_id in released:
        server.flip(allocation_id, "released")
    flipped_at, flipped_real = server.now, time.time()
    server.tick(1)
    sub.poll()
    item = await asyncio.wait_for(items.__anext__(), 5)
    emitted_at = time.time()
    payload = item[0]["event"]
    assert len(payload["allocations"]) == 5  # one trigger event carrying all five
    await items.aclose()  # the trigger ends: its last word, with the gauge at 0

    metrics = listener.wait_for(lambda ms: _gauge(ms, P + "watchers")[-1:] == [0.0])
    tags = {"conn_id": "oes_w", "enterprise_id": "ent1"}
    assert all(m.tags == tags for m in metrics), [m.raw for m in metrics]
    # One count per allocation, by final status (not one per trigger event).
    counters = sorted((m.name, m.value) for m in metrics if m.kind == "c")
    assert counters == [(P + "events.cleared", 3.0), (P + "events.released", 2.0)]
    delays = [m for m in metrics if m.name.startswith(P + "event_delay.")]
    assert Counter(m.name for m in delays) == {P + "event_delay.cleared": 3, P + "event_delay.released": 2}
    # From updatedAt (server clock, 4 s behind this machine's at the flip) to the handover: at least the time
    # from the flip on this machine's clock, at most until the test read the event (+1 ms: updatedAt is in ms).
    low_ms, high_ms = (flipped_real - flipped_at) * 1000, (emitted_at - flipped_at) * 1000 + 1
    assert low_ms >= 3_900
    assert all(m.kind == "ms" and low_ms <= m.value <= high_ms for m in delays), [m.raw for m in delays]
    watchers = _gauge(metrics, P + "watchers")
    assert set(watchers[:-1]) == {1.0}
    assert watchers[-1] == 0.0
    # No HTTP here (the in-memory feed has no connection): no request metrics, no rate-limit gauges.
    assert not [m for m in metrics if m.name.startswith((P + "requests.", P + "rate_limit.", P + "retries."))]
    assert metric_groups() == {}  # the last one forgot the group


async def test_metrics_off_sends_nothing_and_changes_nothing(statsd_listener: StatsdListener) -> None:
    # The listener exists, metrics are off (the default): the watcher works as before and sends nothing.
    _metrics.reset()
    server = Server(now=time.time())
    feed = Feed(server)
    trigger = AllocationEventTrigger(enterprise_id="ent1", oes_conn_id="oes_w")
    watcher = Watcher(trigger, None, markers=False, open_subscription=opener(feed), clock=lambda: server.now)
    items = watcher.items()
    first = asyncio.ensure_future(items.__anext__())
    sub = await _until(lambda: feed.subscriptions and feed.subscriptions[-1], "subscribe")
    sub.poll()
    await asyncio.wait_for(first, 5)
    allocation_id = server.add()
    server.tick(1)
    server.flip(allocation_id, "cleared")
    sub.poll()
    item = await asyncio.wait_for(items.__anext__(), 5)
    assert [a["id"] for a in item[0]["event"]["allocations"]] == [allocation_id]
    await items.aclose()
    await asyncio.sleep(0.2)
    assert statsd_listener.lines == []


# ---------------------------------------------------------------------- against the simulator


class Collected:
    """Runs ``trigger.run()`` in a task and collects its events' allocation ids."""

    def __init__(self, trigger: AllocationEventTrigger) -> None:
        trigger.asset_state_store = Accessor()
        self.trigger = trigger
        self.ids: list[str] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.trigger.run():
            self.ids.extend(a["id"] for a in event.payload["allocations"])

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _sensor_event(sim: OESSimulator, conn_id: str, allocation_id: str) -> dict[str, Any]:
    trigger = AllocationStatusTrigger(
        allocation_id=allocation_id, enterprise_id=sim.enterprise_id, oes_conn_id=conn_id, poll_interval=0.2
    )
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the sensor's trigger ended without an event")


@pytest.mark.integration
@pytest.mark.parametrize("with_sensor", [False, True], ids=["watchers_alone", "beside_a_deferred_sensor"])
async def test_watchers_against_the_simulator_send_events_delays_requests_and_gauges(
    with_sensor: bool,
    oes_simulator: OESSimulator,
    make_connection: Callable[..., str],
    statsd_metrics: Callable[..., StatsdListener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener = statsd_metrics(tags="influxdb")
    monkeypatch.setattr(metric_reporters, "FLUSH_PERIOD", 0.0)  # send after every poll, so this short run shows it all
    conn_id = make_connection(
        conn_id="oes_watch", max_retries=3, retry_max_wait=0.2, feed_overlap=2, poll_strategy="feed"
    )
    cleared = Collected(AllocationEventTrigger(oes_conn_id=conn_id, poll_interval=0.2))
    released = Collected(AllocationEventTrigger(oes_conn_id=conn_id, statuses="released", poll_interval=0.2))
    # Both watch (gauge at 2), and the feed has polled twice: both fixed their start ("now") on its first poll.
    await _until(lambda: 2.0 in _gauge(listener.metrics(), P + "watchers"), "both watchers reported")
    await _until(lambda: any(f.polls >= 2 for f in _feed.running_feeds().values()), "two polls of the feed")
    expected = {oes_simulator.add_allocation(final_status="reserved"): s for s in ["cleared"] * 4 + ["released"] * 3}
    sensor = None
    if with_sensor:  # a deferred sensor waits for one of the cleared ones, on the same feed and client
        watched = next(iter(expected))
        sensor = asyncio.ensure_future(_sensor_event(oes_simulator, conn_id, watched))
        await _until(lambda: 1.0 in _gauge(listener.metrics(), P + "allocations.waiting"), "the sensor waiting")
    oes_simulator.inject_fault("429", count=1, retry_after=0.1)
    oes_simulator.inject_fault("drop", count=1)
    flipped = time.monotonic()
    for allocation_id, status in expected.items():
        oes_simulator.set_status(allocation_id, status)
    await _until(lambda: len(cleared.ids) >= 4 and len(released.ids) >= 3, "every allocation emitted")
    if sensor is not None:
        assert (await asyncio.wait_for(sensor, 30))["allocation"]["status"] == "cleared"
    flip_to_last_event = time.monotonic() - flipped
    assert sorted(cleared.ids) == sorted(i for i, s in expected.items() if s == "cleared")
    assert sorted(released.ids) == sorted(i for i, s in expected.items() if s == "released")

    # While they still watch, every request the simulator saw so far is counted (the watchers send the
    # connection's request metrics: no poller needs to exist for that).
    seen = oes_simulator.request_count
    listener.wait_for(lambda ms: sum(m.value for m in ms if m.name.startswith(P + "requests.")) >= seen)
    await cleared.stop()
    await released.stop()
    metrics = listener.wait_for(lambda ms: _gauge(ms, P + "watchers")[-1:] == [0.0])
    await _until(lambda: not _feed.running_feeds(), "the feed stopped")
    sent = oes_simulator.request_count

    # --- tags: connection and enterprise on every metric, the connection alone on the limiter's; never the token
    enterprise_tags = {"conn_id": conn_id, "enterprise_id": oes_simulator.enterprise_id}
    for metric in metrics:
        expected_tags = {"conn_id": conn_id} if metric.name.startswith(P + "rate_limit.") else enterprise_tags
        assert metric.tags == expected_tags, metric.raw
    assert oes_simulator.token not in "\n".join(listener.lines)

    # --- requests: counted once each, whoever sent them (watchers, poller), by kind and outcome
    requests = {m.name for m in metrics if m.name.startswith(P + "requests.")}
    assert all(m.kind == "c" for m in metrics if m.name in requests)
    total = sum(_sum(metrics, name) for name in requests)
    assert seen <= total <= sent  # all of them while watching; never one twice (at most a last in-flight one lost)
    outcomes: Counter[str] = Counter()
    for name in requests:
        outcomes[name.rsplit(".", 1)[1]] += int(_sum(metrics, name))
    assert outcomes == {"429": 1, "transport_error": 1, "2xx": total - 2}
    kinds = {name.split(".")[3] for name in requests}
    if with_sensor:
        assert "feed_page" in kinds
        assert kinds <= {"feed_page", "id_batch", "single"}
    else:
        assert kinds == {"feed_page"}  # the watchers read the feed only
    assert sum(_sum(metrics, P + f"retries.{kind}") for kind in _metrics.REQUEST_KINDS) == 2
    latencies = [m for m in metrics if m.name.startswith(P + "request_latency.")]
    assert {m.name.split(".")[3] for m in latencies} == kinds
    assert all(m.kind == "ms" and 0 < m.value < 10_000 for m in latencies)

    # --- events: one per allocation the watchers emitted (plus the sensor's own trigger event), by status
    sensor_events = 1 if with_sensor else 0
    assert _sum(metrics, P + "events.cleared") == 4 + sensor_events
    assert _sum(metrics, P + "events.released") == 3
    assert _sum(metrics, P + "events.error") == 0
    delays = [m for m in metrics if m.name.startswith(P + "event_delay.")]
    assert Counter(m.name for m in delays) == {
        P + "event_delay.cleared": 4 + sensor_events,
        P + "event_delay.released": 3,
    }
    # The simulator and this test share a clock: no delay is longer than the wait from the first flip to the
    # last event (the 429 slows the adaptive limiter, which may stretch it over several polls).
    assert all(m.kind == "ms" and 0 <= m.value <= flip_to_last_event * 1000 + 50 for m in delays)

    # --- gauges: the watchers (2 while both watch, 0 at the end), the limiter's window, limit and rate
    watchers = _gauge(metrics, P + "watchers")
    assert max(watchers) == 2
    assert watchers[-1] == 0
    assert set(_gauge(metrics, P + "rate_limit.limit")) == {360}
    in_window = _gauge(metrics, P + "rate_limit.in_window")
    assert in_window == sorted(in_window)  # all of this test's requests fall within one 60 s window
    # A request the stop cancelled had taken its slot but may never have reached the simulator: one at most per
    # request source (the feed; and the sensor's poller).
    assert 0 < in_window[-1] <= sent + (2 if with_sensor else 1)
    rates = _gauge(metrics, P + "rate_limit.rate")
    if hasattr(_metrics_limiter(), "adaptive"):
        assert all(0 < r <= 360 for r in rates)
        assert min(rates) < 360  # the 429 lowered it
    else:
        assert rates == []


def _metrics_limiter() -> object:
    from airflow_provider_oes._rate_limit import RateLimiter

    return RateLimiter(360, 60)


# ---------------------------------------------------------------------- the Airflow 3.3 shared-stream path


async def test_identical_watchers_on_one_shared_stream_count_once(
    statsd_metrics: Callable[..., StatsdListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two triggers with the same kwargs (two assets, one filter) share Airflow's stream: one watcher, one count."""
    shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="Airflow 3.3 shared streams")
    from tests.triggers.test_event_trigger_shared_stream import TriggerRun

    listener = statsd_metrics(tags="influxdb")
    monkeypatch.setattr(metric_reporters, "FLUSH_PERIOD", 0.0)
    server = Server(now=time.time())
    feed = Feed(server)
    monkeypatch.setattr(watcher_module, "open_feed_subscription", opener(feed))
    manager = shared_stream.SharedStreamManager()
    kwargs = AllocationEventTrigger(enterprise_id="ent1", oes_conn_id="oes_w", poll_interval=0.001).serialize()[1]
    runs = [TriggerRun(manager, AllocationEventTrigger(**kwargs), trigger_id, Accessor()) for trigger_id in (1, 2)]
    sub = await _until(lambda: feed.subscriptions and feed.subscriptions[-1], "the feed subscription")
    sub.poll()
    a, b = server.add(), server.add()
    server.tick(1)
    server.flip(a, "cleared")
    server.flip(b, "cleared")
    sub.poll()
    await _until(lambda: all(run.events for run in runs), "the event, to both subscribers")
    assert [run.ids() for run in runs] == [[[a, b]], [[a, b]]]
    for run in runs:
        manager.confirm_persisted([seq for _payload, seq in run.events if seq is not None])
    await _until(lambda: _sum(listener.metrics(), P + "events.cleared") >= 2, "the events counted")
    for run in runs:
        await run.stop()
    # Both left: Airflow closes the stream's producer, and the watcher's last word has the gauge at 0.
    metrics = listener.wait_for(lambda ms: _gauge(ms, P + "watchers")[-1:] == [0.0])

    assert len(feed.subscriptions) == 1  # one watcher loop for both triggers
    assert feed.subscriptions[0].closed
    assert _sum(metrics, P + "events.cleared") == 2  # each allocation once, not once per subscriber
    assert [m.name for m in metrics if m.name.startswith(P + "event_delay.")] == 2 * [P + "event_delay.cleared"]
    watchers = _gauge(metrics, P + "watchers")
    assert set(watchers[:-1]) == {1.0}
    assert watchers[-1] == 0.0
