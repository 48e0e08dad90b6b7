"""The sync hook's request metrics (one count and one timing per attempt, retries counted), over real StatsD."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_oes.exceptions import OESAuthenticationError, OESNotFoundError
from airflow_provider_oes.hooks.oes import OESHook
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests_mock as rm

    from tests._statsd import StatsdListener

BASE = "https://app.bitgo-test.com"
TOKEN = "v2x-super-secret-access-token-0123456789"
URL = f"{BASE}/api/network/v1/enterprises/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"
TAGS = {"conn_id": "oes_default", "enterprise_id": "ent1"}


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"enterprise_id": "ent1", "max_retries": 3, "retry_max_wait": 1}
    monkeypatch.setenv(
        "AIRFLOW_CONN_OES_DEFAULT", json.dumps({"conn_type": "oes", "host": BASE, "password": TOKEN, "extra": extra})
    )


def test_each_attempt_is_counted_by_outcome_and_retries_are_counted(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker, no_sleep: list[float]
) -> None:
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(
        URL,
        [
            {"status_code": 503, "json": {"error": "down"}},
            {"exc": requests.ConnectionError("connection refused")},
            {"status_code": 429, "json": {"error": "slow down"}, "headers": {"Retry-After": "0"}},
            {"json": allocation_body(status="cleared")},
        ],
    )
    OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    metrics = listener.wait_for(lambda ms: sum(m.name.startswith("airflow.oes.request_latency") for m in ms) >= 4)
    counters = sorted((m.name, m.value) for m in metrics if m.kind == "c")
    assert counters == [
        ("airflow.oes.requests.single.2xx", 1.0),
        ("airflow.oes.requests.single.429", 1.0),
        ("airflow.oes.requests.single.5xx", 1.0),
        ("airflow.oes.requests.single.transport_error", 1.0),
        ("airflow.oes.retries.single", 1.0),
        ("airflow.oes.retries.single", 1.0),
        ("airflow.oes.retries.single", 1.0),
    ]
    timers = [m for m in metrics if m.kind == "ms"]
    assert [m.name for m in timers] == ["airflow.oes.request_latency.single"] * 4
    assert all(m.tags == TAGS for m in metrics)
    assert TOKEN not in "\n".join(listener.lines)


def test_a_permanent_error_is_counted_once_without_retry(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(URL, status_code=404, json={"error": "no such allocation"})
    with pytest.raises(OESNotFoundError):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    metrics = listener.wait_for(lambda ms: len(ms) >= 2)
    assert sorted((m.name, m.kind) for m in metrics) == [
        ("airflow.oes.request_latency.single", "ms"),
        ("airflow.oes.requests.single.4xx", "c"),
    ]


def test_no_request_sent_means_nothing_counted(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A missing token fails before any request: there is no attempt to count.
    listener = statsd_metrics(tags="influxdb")
    monkeypatch.setenv(
        "AIRFLOW_CONN_OES_DEFAULT", json.dumps({"conn_type": "oes", "host": BASE, "extra": {"enterprise_id": "ent1"}})
    )
    with pytest.raises(OESAuthenticationError, match="token"):
        OESHook().get_allocation(DEFAULT_ALLOCATION_ID)
    from airflow_provider_oes import _metrics

    _metrics.retry("single", _metrics.tags_for("marker"))  # sent after: anything counted before would precede it
    metrics = listener.wait_for(lambda ms: len(ms) >= 1)
    assert [m.name for m in metrics] == ["airflow.oes.retries.single"]
    assert requests_mock.call_count == 0


def test_a_plain_listing_is_counted_as_list_whatever_its_filters(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker
) -> None:
    """The operator's listing sorted by ``updatedAt`` with a status filter looks like a feed page on the wire:
    the request kind comes from the caller, never from the query string."""
    from airflow_provider_oes.operators.allocation import ListAllocationsOperator

    listener = statsd_metrics(tags="influxdb")
    requests_mock.get(
        f"{BASE}/api/network/v1/enterprises/ent1/clients/allocations",
        json={"allocations": [allocation_body()["allocation"]]},
    )
    operator = ListAllocationsOperator(
        task_id="listing", statuses=["cleared", "released"], sort_field="updatedAt", sort_direction="DESC"
    )
    operator.execute({})
    metrics = listener.wait_for(lambda ms: any(m.kind == "ms" for m in ms))
    assert "statuses=cleared%2Creleased" in requests_mock.last_request.url
    assert "sortField=updatedAt" in requests_mock.last_request.url
    assert sorted((m.name, m.kind) for m in metrics) == [
        ("airflow.oes.request_latency.list", "ms"),
        ("airflow.oes.requests.list.2xx", "c"),
    ]


def test_settlement_reads_are_counted_under_their_own_kinds(
    statsd_metrics: Callable[..., StatsdListener], requests_mock: rm.Mocker, no_sleep: list[float]
) -> None:
    from tests._settlement_factories import SETTLEMENT_ID, details_body

    listener = statsd_metrics(tags="influxdb")
    enterprise = f"{BASE}/api/network/v1/enterprises/ent1"
    requests_mock.get(
        f"{enterprise}/clients/settlements/{SETTLEMENT_ID}",
        [{"status_code": 503, "json": {"error": "down"}}, {"json": details_body("completed")}],
    )
    requests_mock.get(f"{enterprise}/partners", json={"partners": []})
    hook = OESHook()
    hook.get_settlement(SETTLEMENT_ID)
    assert list(hook.list_partners()) == []
    metrics = listener.wait_for(lambda ms: sum(m.name.startswith("airflow.oes.request_latency") for m in ms) >= 3)
    counters = sorted((m.name, m.value) for m in metrics if m.kind == "c")
    assert counters == [
        ("airflow.oes.requests.settlement_page.2xx", 1.0),
        ("airflow.oes.requests.settlement_single.2xx", 1.0),
        ("airflow.oes.requests.settlement_single.5xx", 1.0),
        ("airflow.oes.retries.settlement_single", 1.0),
    ]
