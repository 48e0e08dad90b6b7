"""The metrics module against a real UDP StatsD listener, configured the way a deployment configures Airflow."""

from __future__ import annotations

import importlib
import random
import statistics
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes import _metrics
from airflow_provider_oes._metrics import backend as metrics_backend
from airflow_provider_oes._metrics import names as metric_names
from airflow_provider_oes._metrics import reporters
from airflow_provider_oes._rate_limit import LimiterStats

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests._statsd import StatsdListener


def _flushed(poller: _metrics.PollerMetrics, waiting: int) -> None:
    poller.waiting = waiting
    poller.flush()


def _emit_one_of_each() -> None:
    conn = _metrics.tags_for("oes_a", "ent-1")
    _metrics.request("id_batch", "2xx", 0.25, conn)
    _metrics.request("single", "429", 0.01, conn)
    _metrics.retry("single", conn)
    poller = _metrics.PollerMetrics("oes_a", "ent-1")
    poller.event("cleared", updated_at=datetime.now(timezone.utc) - timedelta(seconds=2))
    poller.event("error")
    poller.reconciliation_finds(3)
    poller.waiting = 1234
    poller.flush(limiter=SimpleNamespace(stats=lambda: LimiterStats(17, 360, 300.0)))
    _metrics.sensor_wait(90.0, "released", "reschedule", conn)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Any:
    _metrics.reset()
    yield
    _metrics.reset()


def test_off_by_default_sends_nothing(statsd_listener: StatsdListener) -> None:
    # The listener exists but Airflow's metrics are not switched on: every call must be a no-op.
    assert not _metrics.enabled()
    _emit_one_of_each()
    # Switch on afterwards and send one marker: anything sent while off would have arrived before it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        mp.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        mp.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd_listener.port))
        _metrics.reset(reinitialize=True)
        assert _metrics.enabled()
        _metrics.retry("feed_page", _metrics.tags_for("marker"))
        metrics = statsd_listener.wait_for(lambda ms: len(ms) >= 1)
    _metrics.reset(reinitialize=True)
    assert [m.name for m in metrics] == ["airflow.oes.retries.feed_page"]


def test_names_types_values_and_influxdb_tags(statsd_metrics: Callable[..., StatsdListener]) -> None:
    listener = statsd_metrics(tags="influxdb")
    _emit_one_of_each()
    metrics = listener.wait_for(lambda ms: len(ms) >= 14)
    got = {(m.name, m.kind): m for m in metrics}
    assert len(metrics) == 14, [m.raw for m in metrics]
    conn = {"conn_id": "oes_a", "enterprise_id": "ent-1"}
    expected_counters = {
        "airflow.oes.requests.id_batch.2xx": 1,
        "airflow.oes.requests.single.429": 1,
        "airflow.oes.retries.single": 1,
        "airflow.oes.events.cleared": 1,
        "airflow.oes.events.error": 1,
        "airflow.oes.reconciliation.finds": 3,
    }
    for name, value in expected_counters.items():
        assert got[(name, "c")].value == value
        assert got[(name, "c")].tags == conn
    assert got[("airflow.oes.allocations.waiting", "g")].value == 1234
    assert got[("airflow.oes.allocations.waiting", "g")].tags == conn
    for name, value in {"in_window": 17, "limit": 360, "rate": 300}.items():
        gauge = got[(f"airflow.oes.rate_limit.{name}", "g")]
        assert (gauge.value, gauge.tags) == (value, {"conn_id": "oes_a"})
    assert got[("airflow.oes.request_latency.id_batch", "ms")].value == pytest.approx(250.0)
    assert got[("airflow.oes.request_latency.single", "ms")].value == pytest.approx(10.0)
    delay = got[("airflow.oes.event_delay.cleared", "ms")]
    assert 2000.0 <= delay.value < 2000.0 + 5000.0
    assert delay.tags == conn
    wait = got[("airflow.oes.sensor.wait_time.released", "ms")]
    assert wait.value == pytest.approx(90_000.0)
    assert wait.tags == {**conn, "mode": "reschedule"}


def test_plain_statsd_keeps_kind_and_outcome_in_the_name(statsd_metrics: Callable[..., StatsdListener]) -> None:
    # Plain StatsD drops tags: the 429 alert must still be possible from the name alone.
    listener = statsd_metrics(tags=None)
    _metrics.request("feed_page", "429", 0.5, _metrics.tags_for("oes_a", "ent-1"))
    metrics = listener.wait_for(lambda ms: len(ms) >= 2)
    assert sorted(m.raw for m in metrics) == [
        "airflow.oes.request_latency.feed_page:500.000000|ms",
        "airflow.oes.requests.feed_page.429:1|c",
    ]


def test_datadog_tags(statsd_metrics: Callable[..., StatsdListener]) -> None:
    pytest.importorskip("datadog", reason="DogStatsD needs the datadog package (installed by the test extras)")
    listener = statsd_metrics(tags="datadog")
    _flushed(_metrics.PollerMetrics("oes_a", "ent-1"), 7)
    metrics = listener.wait_for(lambda ms: len(ms) >= 1)
    assert [(m.name, m.kind, m.value, m.tags) for m in metrics] == [
        ("airflow.oes.allocations.waiting", "g", 7.0, {"conn_id": "oes_a", "enterprise_id": "ent-1"})
    ]


def test_unsafe_tag_values_are_sanitized_not_dropped(statsd_metrics: Callable[..., StatsdListener]) -> None:
    # Airflow drops a whole metric whose InfluxDB tags hold ',', '=' or spaces: make them safe instead.
    listener = statsd_metrics(tags="influxdb")
    _flushed(_metrics.PollerMetrics("conn,x=1 y", "ent:1"), 1)
    metrics = listener.wait_for(lambda ms: len(ms) >= 1)
    assert [(m.name, m.tags) for m in metrics] == [
        ("airflow.oes.allocations.waiting", {"conn_id": "conn_x_1_y", "enterprise_id": "ent_1"})
    ]


def test_future_updated_at_gives_zero_delay(statsd_metrics: Callable[..., StatsdListener]) -> None:
    # The server's clock ahead of the triggerer's must not produce negative timings.
    listener = statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    poller.event("released", updated_at=datetime.now(timezone.utc) + timedelta(hours=1))
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 3)
    assert {(m.name, m.value) for m in metrics} == {
        ("airflow.oes.events.released", 1.0),
        ("airflow.oes.event_delay.released", 0.0),
        ("airflow.oes.allocations.waiting", 0.0),
    }


def test_a_burst_is_counted_exactly_and_its_delays_sampled(statsd_metrics: Callable[..., StatsdListener]) -> None:
    # 1,000 flips seen in one interval: one counter datagram with the exact count, a bounded sample of delays.
    listener = statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    now = datetime.now(timezone.utc)
    for n in range(1000):
        # The first few flips are fresh, the other 99 % five seconds old.
        poller.event("cleared", updated_at=now - timedelta(seconds=0 if n < _metrics.TIMING_SAMPLES else 5))
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 2 + _metrics.TIMING_SAMPLES)
    counters = [m for m in metrics if m.name == "airflow.oes.events.cleared"]
    assert [(m.kind, m.value) for m in counters] == [("c", 1000.0)]
    delays = [m.value for m in metrics if m.name == "airflow.oes.event_delay.cleared"]
    assert len(delays) == _metrics.TIMING_SAMPLES
    assert all(0 <= d < 5_000 + 5_000 for d in delays)
    # Drawn from the whole interval, not its first events (all fresh): a uniform sample is nearly all 5 s old
    # (fewer than half would happen with probability about 2e-9).
    assert sum(d >= 5_000 for d in delays) >= _metrics.TIMING_SAMPLES // 2
    # The next flush starts afresh: nothing gathered, only the gauge.
    listener.clear()
    poller.waiting = 5
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 1)
    assert [(m.name, m.value) for m in metrics] == [("airflow.oes.allocations.waiting", 5.0)]


def test_event_delay_is_taken_when_the_event_fires_not_at_the_flush(
    statsd_metrics: Callable[..., StatsdListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events are noted and counted at the flush: their delay must still end when they fired.
    listener = statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    fired = datetime(2026, 1, 1, tzinfo=timezone.utc)
    monkeypatch.setattr(reporters.time, "time", lambda: fired.timestamp())
    poller.event("cleared", updated_at=fired - timedelta(seconds=2))
    monkeypatch.setattr(reporters.time, "time", lambda: fired.timestamp() + 30)
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 3)
    assert [m.value for m in metrics if m.name == "airflow.oes.event_delay.cleared"] == [2000.0]


def test_a_long_burst_is_counted_within_bounded_memory(statsd_metrics: Callable[..., StatsdListener]) -> None:
    listener = statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    now = datetime.now(timezone.utc)
    total = 3 * _metrics.PENDING_MAX + 7
    for n in range(total):
        poller.event("released" if n % 3 == 0 else "cleared", updated_at=now)
        assert poller.pending < _metrics.PENDING_MAX
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 3 + 2 * _metrics.TIMING_SAMPLES)
    counts = {m.name: m.value for m in metrics if m.kind == "c"}
    released = (total + 2) // 3
    assert counts == {"airflow.oes.events.released": released, "airflow.oes.events.cleared": total - released}
    assert sum(m.name.startswith("airflow.oes.event_delay.") for m in metrics) == 2 * _metrics.TIMING_SAMPLES


def test_nothing_sent_for_zero_reconciliation_finds(statsd_metrics: Callable[..., StatsdListener]) -> None:
    listener = statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    poller.reconciliation_finds(0)
    poller.waiting = 1
    poller.flush()
    metrics = listener.wait_for(lambda ms: len(ms) >= 1)
    assert [m.name for m in metrics] == ["airflow.oes.allocations.waiting"]


def test_poller_metrics_off_gather_nothing() -> None:
    poller = _metrics.PollerMetrics("c", "e")
    assert not poller.on
    poller.event("cleared", updated_at=datetime.now(timezone.utc))
    poller.reconciliation_finds(2)
    assert not poller.gathered


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (302, "3xx"),
        (400, "4xx"),
        (404, "4xx"),
        (429, "429"),
        (500, "5xx"),
        (503, "5xx"),
        (None, "transport_error"),
    ],
)
def test_outcome_classes(status_code: int | None, expected: str) -> None:
    assert _metrics.outcome(status_code) == expected


def test_a_failing_backend_never_breaks_the_caller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("backend down")

            return fail

    monkeypatch.setattr(metrics_backend, "backend", Broken())
    monkeypatch.setattr(metrics_backend, "failed_once", False)
    with caplog.at_level("WARNING", logger=metrics_backend.__name__):
        _emit_one_of_each()  # must not raise
    assert [r.getMessage() for r in caplog.records].count(
        "Could not emit an OES metric; metrics errors are not logged again"
    ) == 1


def test_uses_the_backend_airflow_already_initialized(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a task runner Airflow has set up the SDK's stats itself: the provider must send through that backend,
    # not build a second one.
    from airflow.sdk.observability import stats

    sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: sent.append((name, args, kwargs))

    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setattr(metrics_backend, "owns_init", False)
    if hasattr(stats, "incr"):  # Airflow 3.3
        shared = importlib.import_module(stats.incr.__module__)
        monkeypatch.setattr(shared, "_factory", Recorder)
        monkeypatch.setattr(shared, "_backend", None)
        monkeypatch.setattr(shared, "_export_legacy_names", False)
    else:  # Airflow 3.2
        monkeypatch.setattr(stats.Stats, "factory", Recorder)
        monkeypatch.setattr(stats.Stats, "instance", None)
    _metrics.reset()
    _metrics.retry("id_batch", _metrics.tags_for("c", "e"))
    assert sent == [("incr", ("oes.retries.id_batch",), {"tags": {"conn_id": "c", "enterprise_id": "e"}})]
    assert metrics_backend.owns_init is False


def test_a_poller_sends_at_most_every_flush_period(
    statsd_metrics: Callable[..., StatsdListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    statsd_metrics(tags="influxdb")
    poller = _metrics.PollerMetrics("c", "e")
    assert poller.due()  # the first sweep sends at once
    poller.waiting = 3
    poller.flush()
    assert not poller.due()  # the next sweeps only gather ...
    monkeypatch.setattr(reporters, "FLUSH_PERIOD", 0.0)
    assert poller.due()  # ... until FLUSH_PERIOD has passed


def test_sample_is_uniform_and_exact_in_count() -> None:
    # Reservoir sampling with skips: every item equally likely to be in the sample, however many came.
    rng_state = random.getstate()
    random.seed(11)
    try:
        picked: list[int] = []
        for _ in range(2000):
            sample = _metrics.Sample()
            for value in range(1, 10_001):
                sample.seen += 1
                if sample.seen >= sample.next:
                    sample.take(float(value))
            assert sample.seen == 10_000
            assert len(sample.values) == _metrics.TIMING_SAMPLES
            picked.extend(int(v) for v in sample.values)
    finally:
        random.setstate(rng_state)
    # Uniform over 1..10,000: mean 5,000.5 (standard error about 32 here); each quarter about a quarter.
    assert abs(statistics.mean(picked) - 5000.5) < 200
    quarters = Counter((v - 1) * 4 // 10_000 for v in picked)
    assert all(abs(quarters[q] / len(picked) - 0.25) < 0.03 for q in range(4))


def test_a_short_run_is_sampled_whole() -> None:
    sample = _metrics.Sample()
    for value in (5.0, 7.0):
        sample.seen += 1
        if sample.seen >= sample.next:
            sample.take(value)
    assert (sample.seen, sample.values) == (2, [5.0, 7.0])


def test_watcher_metrics_count_each_allocation_and_send_the_connections_metrics_once(
    statsd_metrics: Callable[..., StatsdListener],
) -> None:
    from airflow_provider_oes.models import AllocationStatus

    listener = statsd_metrics(tags="influxdb")
    watchers = _metrics.WatcherMetrics("oes_a", "ent-1")
    watchers.watchers = 2
    two_s_ago = datetime.now(timezone.utc) - timedelta(seconds=2)
    # One trigger event carrying six cleared allocations and one released (the model's enum status).
    watchers.emitted(
        [SimpleNamespace(status="cleared", updated_at=two_s_ago)] * 6
        + [SimpleNamespace(status=AllocationStatus.RELEASED, updated_at=two_s_ago)]
    )
    requests = _metrics.Batch()  # the connection client's batch, also flushed by any poller of the connection
    _metrics.request("feed_page", "2xx", 0.1, _metrics.tags_for("oes_a", "ent-1"), requests)
    limiter = SimpleNamespace(stats=lambda: LimiterStats(17, 360, 300.0))
    watchers.flush(requests, limiter)
    watchers.flush(requests, limiter)  # nothing new since: only the gauges again
    metrics = listener.wait_for(lambda ms: len(ms) >= 17)
    assert len(metrics) == 17, [m.raw for m in metrics]
    conn = {"conn_id": "oes_a", "enterprise_id": "ent-1"}
    counters = sorted((m.name, m.value) for m in metrics if m.kind == "c")
    assert counters == [
        ("airflow.oes.events.cleared", 6.0),
        ("airflow.oes.events.released", 1.0),
        ("airflow.oes.requests.feed_page.2xx", 1.0),  # sent once although flushed twice
    ]
    delays = [m for m in metrics if m.name.startswith("airflow.oes.event_delay.")]
    assert Counter(m.name for m in delays) == {  # timings: a sample of at most TIMING_SAMPLES per flush
        "airflow.oes.event_delay.cleared": _metrics.TIMING_SAMPLES,
        "airflow.oes.event_delay.released": 1,
    }
    assert all(2000.0 <= m.value < 2000.0 + 5000.0 and m.tags == conn for m in delays)
    gauges = [(m.name, m.value, m.tags) for m in metrics if m.kind == "g"]
    assert gauges == 2 * [
        ("airflow.oes.watchers", 2.0, conn),
        ("airflow.oes.rate_limit.in_window", 17.0, {"conn_id": "oes_a"}),
        ("airflow.oes.rate_limit.limit", 360.0, {"conn_id": "oes_a"}),
        ("airflow.oes.rate_limit.rate", 300.0, {"conn_id": "oes_a"}),
    ]


def test_watcher_metrics_off_send_nothing() -> None:
    assert not _metrics.enabled()
    watchers = _metrics.WatcherMetrics("oes_a", "ent-1")
    watchers.emitted([SimpleNamespace(status="cleared", updated_at=datetime.now(timezone.utc))])
    assert not watchers.due()
    watchers.flush(_metrics.Batch(), SimpleNamespace(stats=lambda: LimiterStats(1, 360, 360.0)))
    assert watchers.last_flush is None  # returned at once


def test_docs_list_every_metric() -> None:
    import re
    from pathlib import Path

    operations = (Path(__file__).resolve().parents[1] / "docs" / "operations.rst").read_text()
    names = [v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str) and v.startswith("oes.")]
    assert "oes.watchers" in names
    missing = [name for name in names if f"* - ``{name}" not in operations]
    assert missing == []
    # And nothing documented that the code does not send.
    documented = re.findall(r"\* - ``(oes\.[a-z_.]+?)(?:\.<[a-z]+>)*``", operations)
    assert sorted(set(documented)) == sorted(names)
