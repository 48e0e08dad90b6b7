"""``end_from_trigger`` on the sensor's side: a task its trigger ended that resumes anyway (``dag.test()``).

``dag.test()`` runs the trigger in process and resumes the task with the event's payload only (``"success"``
for a ``TaskSuccessEvent``, its XComs dropped): the sensor checks once more and applies the same rules. The
events themselves are tested in ``tests/triggers/test_task_end.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.exceptions import OESResponseError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers._task_end import TASK_END_PAYLOAD
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record
from tests._mock_api import URL, set_connection

if TYPE_CHECKING:
    import requests_mock as rm


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, enterprise_id="ent1", max_retries=0, retry_max_wait=0.05)


def _sensor() -> AllocationStatusSensor:
    return AllocationStatusSensor(
        task_id="wait", allocation_id=DEFAULT_ALLOCATION_ID, deferrable=True, end_from_trigger=True
    )


def test_task_end_payload_is_the_success_event_payload() -> None:
    from airflow.triggers.base import TaskSuccessEvent

    assert TaskSuccessEvent(xcoms={"return_value": {}}).payload == TASK_END_PAYLOAD


def test_resumed_after_the_trigger_ended_it_checks_again_and_returns_the_allocation(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.get(URL, json=allocation_body(status="cleared", reason=...))
    assert _sensor().execute_complete({}, event=TASK_END_PAYLOAD) == allocation_record(status="cleared", reason=...)
    assert requests_mock.call_count == 1


def test_resumed_after_the_trigger_ended_it_never_trusts_a_status_that_is_not_cleared(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.get(URL, json=allocation_body(status="reserved"))
    with pytest.raises(OESResponseError, match="does not show it cleared; not trusted as success"):
        _sensor().execute_complete({}, event=TASK_END_PAYLOAD)
