"""A deferred fleet's metrics, end to end: triggers on the shared poller, the real simulator, real StatsD over UDP.

Airflow's StatsD metrics are switched on the way a deployment does it (``AIRFLOW__METRICS__*``), pointed at a
UDP listener on 127.0.0.1; several :class:`AllocationStatusTrigger` run in one event loop as in a triggerer;
the simulator answers one request 429 and drops another mid-body, both retried. The test then checks every
``oes.*`` datagram against what the simulator saw: names, types, values and tags.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes import _metrics
from airflow_provider_oes._metrics import reporters as metric_reporters
from airflow_provider_oes.exceptions import OESNotFoundError
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._polling.allocations import ALLOCATIONS
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers._shared.waiters import Waiter
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.triggers._support import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests._statsd import Metric, StatsdListener

pytestmark = pytest.mark.integration

P = "airflow.oes."


async def _run_fleet(
    sim: OESSimulator, conn_id: str, finals: dict[str, str], poll_interval: float, listener: StatsdListener
) -> tuple[list[dict[str, Any]], float]:
    """Run one trigger per allocation; once the poller reports them all waiting, flip them.

    :return: the events, and the seconds from the first flip to the last event.
    """

    async def first_event(allocation_id: str) -> dict[str, Any]:
        trigger = AllocationStatusTrigger(
            allocation_id=allocation_id,
            enterprise_id=sim.enterprise_id,
            oes_conn_id=conn_id,
            poll_interval=poll_interval,
        )
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    fleet = asyncio.gather(*(first_event(i) for i in finals))
    # Wait for the state, not a time: the gauge showing every allocation waiting (a loaded machine is slow).
    deadline = asyncio.get_running_loop().time() + 30
    while not any(m.name == P + "allocations.waiting" and m.value == len(finals) for m in listener.metrics()):
        assert asyncio.get_running_loop().time() < deadline, "the poller never reported the fleet waiting"
        await asyncio.sleep(0.05)
    flipped = time.monotonic()
    for allocation_id, status in finals.items():
        sim.set_status(allocation_id, status)
    events = await asyncio.wait_for(fleet, 60)
    return events, time.monotonic() - flipped


def _poller_limiter_type() -> object:
    from airflow_provider_oes._rate_limit import RateLimiter

    return RateLimiter(360, 60)


def _sum(metrics: list[Metric], name: str) -> float:
    return sum(m.value for m in metrics if m.name == name)


@pytest.mark.parametrize("strategy", ["feed", "id_batches"])
async def test_fleet_emits_requests_retries_events_gauges_and_timers(
    strategy: str,
    oes_simulator: OESSimulator,
    make_connection: Callable[..., str],
    statsd_metrics: Callable[..., StatsdListener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener = statsd_metrics(tags="influxdb")
    # Send after every sweep, not every 10 s, so that this short run shows the gauges move.
    monkeypatch.setattr(metric_reporters, "FLUSH_PERIOD", 0.0)
    conn_id = make_connection(
        conn_id="oes_fleet", max_retries=3, retry_max_wait=0.2, batch_size=4, poll_strategy=strategy
    )
    # Reserved until flipped (explicit flips: the change feed sees them as read counts would not show).
    expected = {oes_simulator.add_allocation(final_status="reserved"): s for s in ["cleared"] * 4 + ["released"] * 3}
    oes_simulator.inject_fault("429", count=1, retry_after=0.1)
    oes_simulator.inject_fault("drop", count=1)

    events, flip_to_last_event = await _run_fleet(oes_simulator, conn_id, expected, 0.2, listener)

    assert {e["allocation"]["id"]: e["allocation"]["status"] for e in events} == expected
    sent = oes_simulator.request_count
    # The change feed polls in its own task: a page it asked for just before the last event may still be on its
    # way while the poller stops (and sends its last metrics). The id-batches poller is the only sender and
    # stops with every request answered. Wait until the connection's client is closed: nothing more can be sent.
    await wait_for(lambda: conn_id not in connections.active_clients(), "the connection's client closed")
    late = oes_simulator.request_count - sent
    assert late == 0 if strategy == "id_batches" else late <= 1
    # Datagrams travel asynchronously: wait for the poller's last word (nothing waiting) down to the last gauge
    # of each flush (the rate when the limiter adapts, else the limit), and for every request's count.
    last_gauge = P + ("rate_limit.rate" if hasattr(_poller_limiter_type(), "adaptive") else "rate_limit.limit")

    def complete(ms: list[Metric]) -> bool:
        waiting = [m for m in ms if m.name == P + "allocations.waiting"]
        return (
            any(m.value == 0 for m in waiting)
            and sum(1 for m in ms if m.name == last_gauge) == len(waiting)
            and sum(m.value for m in ms if m.name.startswith(P + "requests.")) >= sent
        )

    metrics = listener.wait_for(complete)
    by_name = Counter(m.name for m in metrics)

    # --- tags: the connection and enterprise on every metric, the connection alone on the limiter's; never the token
    enterprise_tags = {"conn_id": conn_id, "enterprise_id": oes_simulator.enterprise_id}
    for metric in metrics:
        expected_tags = {"conn_id": conn_id} if metric.name.startswith(P + "rate_limit.") else enterprise_tags
        assert metric.tags == expected_tags, metric.raw
    assert oes_simulator.token not in "\n".join(listener.lines)

    # --- requests: one count per HTTP attempt the simulator saw, by kind and outcome
    requests = {m.name: m for m in metrics if m.name.startswith(P + "requests.")}
    assert all(m.kind == "c" for m in metrics if m.name.startswith(P + "requests."))
    total = sum(_sum(metrics, name) for name in requests)
    assert sent <= total <= sent + late  # each once; the feed's late page counted if answered before the stop
    outcomes = Counter()
    for name in requests:
        outcomes[name.rsplit(".", 1)[1]] += _sum(metrics, name)
    assert outcomes == {"429": 1, "transport_error": 1, "2xx": total - 2}
    kinds = {name.split(".")[3] for name in requests}
    if strategy == "feed":
        assert _sum(metrics, P + "requests.feed_page.2xx") >= 1
        assert kinds <= {"feed_page", "id_batch", "single"}
    else:
        assert kinds == {"id_batch"}
    # Both failures were retried (and nothing else was).
    assert sum(_sum(metrics, P + f"retries.{kind}") for kind in _metrics.REQUEST_KINDS) == 2
    # Timings are gathered between flushes and sent as a sample of at most TIMING_SAMPLES per flush.
    latencies = [m for m in metrics if m.name.startswith(P + "request_latency.")]
    assert {m.name.split(".")[3] for m in latencies} == kinds
    assert len(latencies) <= total
    assert all(m.kind == "ms" and 0 < m.value < 10_000 for m in latencies)

    # --- events by final status, each timed from the allocation's updatedAt
    assert _sum(metrics, P + "events.cleared") == 4
    assert _sum(metrics, P + "events.released") == 3
    assert by_name[P + "events.error"] == 0
    delays = [m for m in metrics if m.name.startswith(P + "event_delay.")]
    assert Counter(m.name for m in delays) == {P + "event_delay.cleared": 4, P + "event_delay.released": 3}
    # No flip is older than the whole wait from the first flip to the last event (the simulator and this test
    # share a clock; the adaptive limiter, slowed by the 429, may stretch that wait over several intervals).
    assert all(m.kind == "ms" and 0 <= m.value <= flip_to_last_event * 1000 + 50 for m in delays)

    # --- gauges: waiting allocations per sweep (7, and 0 once the poller stopped), the limiter's window and limit
    waiting = [m.value for m in metrics if m.name == P + "allocations.waiting"]
    assert all(m.kind == "g" for m in metrics if m.name == P + "allocations.waiting")
    assert max(waiting) == 7
    assert waiting[-1] == 0
    limits = {m.value for m in metrics if m.name == P + "rate_limit.limit"}
    assert limits == {360}
    # One reading per sweep and one at the stop; all of this test's requests fall within one 60 s window.
    in_window = [m.value for m in metrics if m.name == P + "rate_limit.in_window"]
    assert len(in_window) == len(waiting)
    assert in_window == sorted(in_window)
    # At the stop: every request so far, and the feed's late page if it had taken its slot (reached or not).
    assert sent <= in_window[-1] <= sent + (0 if strategy == "id_batches" else 1)
    # The adaptive limiter's allowance, where the limiter has one: the limit until a 429 lowers it.
    rates = [m.value for m in metrics if m.name == P + "rate_limit.rate"]
    if hasattr(_poller_limiter_type(), "adaptive"):
        assert len(rates) == len(waiting)
        assert all(0 < r <= 360 for r in rates)
        assert min(rates) < 360  # the 429 lowered it
    else:
        assert rates == []


async def test_poller_counts_an_event_built_from_the_record_alone(
    statsd_metrics: Callable[..., StatsdListener],
) -> None:
    # A strategy may hand the poller only the event payload (no Allocation object): counted and timed the same.
    from types import SimpleNamespace

    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._events import error_event, terminal_event
    from tests._factories import allocation_record

    listener = statsd_metrics(tags="influxdb")
    connection = SimpleNamespace(pollers=0, settings=SimpleNamespace(strategy="id_batches"))
    poller = polling.Poller(polling.PollerRegistry(), ("oes_x", "ent-x"), ALLOCATIONS, connection)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    updated = datetime.now(timezone.utc) - timedelta(seconds=3)
    record = allocation_record(status="released", updatedAt=updated.isoformat().replace("+00:00", "Z"))
    allocation = Allocation.model_validate(record)
    for allocation_id in ("a", "b", "c"):
        poller.waiters[allocation_id] = Waiter(allocation_id, 1.0, loop.create_future())
    poller.finish("a", terminal_event(allocation, "ent-x"))  # the payload alone
    poller.finish("b", terminal_event(allocation, "ent-x"), allocation)
    poller.finish("c", error_event(OESNotFoundError("gone"), "c"))
    poller.finish("c", error_event(OESNotFoundError("gone"), "c"))  # nobody waits any more: not counted
    poller.metrics.flush()
    metrics = listener.wait_for(lambda ms: any(m.name == P + "allocations.waiting" for m in ms))
    assert sorted((m.name, m.value) for m in metrics if m.kind == "c") == [
        (P + "events.error", 1.0),
        (P + "events.released", 2.0),
    ]
    delays = [m.value for m in metrics if m.name == P + "event_delay.released"]
    assert len(delays) == 2
    assert all(3_000 <= d < 3_000 + 5_000 for d in delays)


def test_parse_time_accepts_only_zoned_api_timestamps() -> None:
    from airflow_provider_oes._time import parse_aware_datetime as _parse_time

    assert _parse_time("2025-11-01T10:05:00.000Z") == datetime(2025, 11, 1, 10, 5, tzinfo=timezone.utc)
    assert _parse_time("2025-11-01T10:05:00") is None  # no zone: not a trustworthy time
    assert _parse_time(None) is None
    assert _parse_time("yesterday") is None
