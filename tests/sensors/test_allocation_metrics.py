"""The sensor's wait-time metric (first check to final status) in poke and reschedule mode, over real StatsD."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException

from airflow_provider_oes import _metrics
from airflow_provider_oes.exceptions import AllocationReleasedError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests_mock as rm

    from tests._statsd import StatsdListener

BASE = "https://app.bitgo-test.com"
TOKEN = "v2x-super-secret-access-token-0123456789"
URL = f"{BASE}/api/network/v1/enterprises/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"
WAIT_TIME = "airflow.oes.sensor.wait_time."


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OES_DEFAULT",
        json.dumps({"conn_type": "oes", "host": BASE, "password": TOKEN, "extra": {"enterprise_id": "ent1"}}),
    )


class FakeTI:
    """The part of a RuntimeTaskInstance the sensor asks in reschedule mode."""

    def __init__(self, first_reschedule: datetime | None) -> None:
        self.first_reschedule = first_reschedule
        self.asked = 0

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        self.asked += 1
        return self.first_reschedule


def sensor(**kwargs: Any) -> AllocationStatusSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("allocation_id", DEFAULT_ALLOCATION_ID)
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("poke_interval", 0.01)
    kwargs.setdefault("timeout", 60)
    return AllocationStatusSensor(**kwargs)


def test_poke_mode_times_first_check_to_cleared(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(URL, [{"json": allocation_body(status=s)} for s in ("reserved", "reserved", "cleared")])
    started = time.monotonic()
    sensor().execute({})
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics = listener.wait_for(lambda ms: any(m.name.startswith(WAIT_TIME) for m in ms))
    [wait] = [m for m in metrics if m.name.startswith(WAIT_TIME)]
    assert (wait.name, wait.kind) == (WAIT_TIME + "cleared", "ms")
    assert wait.tags == {"conn_id": "oes_default", "enterprise_id": "ent1", "mode": "poke"}
    # Two 0.01 s poke intervals lie between the first check and the final one.
    assert 20.0 <= wait.value <= elapsed_ms
    assert TOKEN not in "\n".join(listener.lines)


def test_poke_mode_released_is_timed_too(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(URL, [{"json": allocation_body(status=s)} for s in ("reserved", "released")])
    with pytest.raises(AllocationReleasedError):
        sensor().execute({})
    metrics = listener.wait_for(lambda ms: any(m.name.startswith(WAIT_TIME) for m in ms))
    assert [m.name for m in metrics if m.name.startswith(WAIT_TIME)] == [WAIT_TIME + "released"]


def test_reschedule_mode_counts_from_the_first_run(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    # A later run of a rescheduled sensor: its first check was 90 s ago, in the run Airflow recorded first.
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(URL, json=allocation_body(status="cleared"))
    ti = FakeTI(datetime.now(timezone.utc) - timedelta(seconds=90))
    sensor(mode="reschedule").execute({"ti": ti, "task_reschedule_count": 3})  # type: ignore[typeddict-unknown-key]
    metrics = listener.wait_for(lambda ms: any(m.name.startswith(WAIT_TIME) for m in ms))
    [wait] = [m for m in metrics if m.name.startswith(WAIT_TIME)]
    assert wait.name == WAIT_TIME + "cleared"
    assert wait.tags["mode"] == "reschedule"
    assert 90_000.0 <= wait.value < 90_000.0 + 10_000.0


def test_reschedule_mode_first_run_times_itself(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(URL, [{"json": allocation_body(status="reserved")}, {"json": allocation_body(status="cleared")}])
    ti = FakeTI(None)
    with pytest.raises(AirflowRescheduleException):
        sensor(mode="reschedule").execute({"ti": ti})  # type: ignore[typeddict-item]
    # Not final yet: nothing timed; the one question was Airflow's own (its timeout counts from that date).
    assert ti.asked == 1
    started = time.monotonic()
    sensor(mode="reschedule").execute({"ti": ti})  # type: ignore[typeddict-item]
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics = listener.wait_for(lambda ms: any(m.name.startswith(WAIT_TIME) for m in ms))
    [wait] = [m for m in metrics if m.name.startswith(WAIT_TIME)]
    assert 0.0 <= wait.value <= elapsed_ms


def test_no_wait_time_when_deferrable_or_metrics_off(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    requests_mock.get(URL, json=allocation_body(status="cleared"))
    _metrics.reset()
    ti = FakeTI(datetime.now(timezone.utc))
    # Metrics off: the sensor asks nothing more for a metric nobody collects (the one question is Airflow's own).
    sensor(mode="reschedule").execute({"ti": ti, "task_reschedule_count": 1})  # type: ignore[typeddict-unknown-key]
    assert ti.asked == 1
    listener = statsd_metrics(tags="influxdb")
    sensor(deferrable=True).execute({})  # cleared at the first check: returns without deferring
    # A marker sent afterwards: anything the sensor had sent would have arrived before it.
    _metrics.retry("single", _metrics.tags_for("marker"))
    metrics = listener.wait_for(lambda ms: any(m.name == "airflow.oes.retries.single" for m in ms))
    # Only the hook's request metrics of the one check; no wait time in deferrable mode.
    assert [m.name for m in metrics] == [
        "airflow.oes.requests.single.2xx",
        "airflow.oes.request_latency.single",
        "airflow.oes.retries.single",
    ]
