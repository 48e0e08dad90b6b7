"""The deferrable sensor hands the server time of its check to the trigger (``last_check``), for the change feed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body

if TYPE_CHECKING:
    import requests_mock as rm

BASE = "https://app.bitgo-test.com"
URL = f"{BASE}/api/network/v1/enterprises/ent1/clients/allocations/{DEFAULT_ALLOCATION_ID}"


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"enterprise_id": "ent1", "max_retries": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_OES_DEFAULT",
        json.dumps({"conn_type": "oes", "host": BASE, "password": "a-long-access-token-for-this-test", "extra": extra}),
    )


def _deferred(requests_mock: rm.Mocker, **response: object) -> TaskDeferred:
    requests_mock.get(URL, **response)  # type: ignore[arg-type]
    sensor = AllocationStatusSensor(task_id="w", allocation_id=DEFAULT_ALLOCATION_ID, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    return info.value


def test_last_check_is_the_servers_date_of_the_first_check(requests_mock: rm.Mocker) -> None:
    # The server's clock, far from this machine's: the trigger must carry the server's, not ours.
    deferred = _deferred(
        requests_mock, json=allocation_body(status="reserved"), headers={"Date": "Fri, 15 Jan 2027 08:00:00 GMT"}
    )
    assert deferred.trigger.serialize()[1]["last_check"] == "2027-01-15T08:00:00.000Z"


def test_no_date_header_means_no_last_check(requests_mock: rm.Mocker) -> None:
    deferred = _deferred(requests_mock, json=allocation_body(status="reserved"))
    assert "last_check" not in deferred.trigger.serialize()[1]


def test_a_failed_first_check_proves_nothing(requests_mock: rm.Mocker) -> None:
    # A 503 (with a Date) says nothing about the allocation's status: no last check may come from it.
    deferred = _deferred(requests_mock, status_code=503, headers={"Date": "Fri, 15 Jan 2027 08:00:00 GMT"})
    assert "last_check" not in deferred.trigger.serialize()[1]
