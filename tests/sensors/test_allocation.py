"""Unit tests of :class:`AllocationStatusSensor` against requests-mock (no network, no DB)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
import requests_mock as rm
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_oes._errors import error_from_response
from airflow_provider_oes.exceptions import (
    AllocationReleasedError,
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.models import Allocation
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers._events import error_to_payload
from tests._factories import DEFAULT_ALLOCATION_ID, allocation_body, allocation_record
from tests._mock_api import TOKEN, URL, last_request, set_connection

OTHER_ID = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, enterprise_id="ent1", max_retries=2, retry_max_wait=1)


def sensor(**kwargs: Any) -> AllocationStatusSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("allocation_id", DEFAULT_ALLOCATION_ID)
    kwargs.setdefault("deferrable", False)
    return AllocationStatusSensor(**kwargs)


def test_template_fields() -> None:
    assert tuple(AllocationStatusSensor.template_fields) == ("allocation_id", "enterprise_id", "oes_conn_id")


def test_templated_fields_render_and_the_hook_uses_the_rendered_connection() -> None:
    s = AllocationStatusSensor(
        task_id="s",
        allocation_id="{{ params.aid }}",
        enterprise_id="{{ params.ent }}",
        oes_conn_id="oes_{{ params.env }}",
    )
    s.render_template_fields({"params": {"aid": DEFAULT_ALLOCATION_ID, "ent": "ent9", "env": "prod"}})
    assert (s.allocation_id, s.enterprise_id, s.oes_conn_id) == (DEFAULT_ALLOCATION_ID, "ent9", "oes_prod")
    assert s.hook.oes_conn_id == "oes_prod"


def test_defaults() -> None:
    s = sensor()
    assert s.oes_conn_id == "oes_default"
    assert s.enterprise_id is None
    assert s.deferrable is False
    assert s.hook is s.hook
    assert s.hook.oes_conn_id == "oes_default"


def test_reserved_not_done_and_reason_logged(requests_mock: rm.Mocker, capsys: pytest.CaptureFixture[str]) -> None:
    requests_mock.get(URL, json=allocation_body(status="reserved", reason="awaiting partner confirmation"))
    result = sensor().poke({})
    assert isinstance(result, PokeReturnValue)
    assert result.is_done is False
    assert result.xcom_value is None
    out = capsys.readouterr().out
    assert "awaiting partner confirmation" in out
    assert DEFAULT_ALLOCATION_ID in out
    assert TOKEN not in out


def test_cleared_done_with_api_json(requests_mock: rm.Mocker) -> None:
    body = allocation_body(
        status="cleared", reason=None, amount={"currency": "ofcteth", "quantity": "9" * 45}, futureField="x"
    )
    requests_mock.get(URL, json=body)
    result = sensor().poke({})
    assert result.is_done is True
    assert result.xcom_value == body["allocation"]
    assert result.xcom_value["amount"]["quantity"] == "9" * 45
    json.dumps(result.xcom_value)


def test_released_fails_with_reason(requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        URL,
        json=allocation_body(
            status="released",
            reason="insufficient balance",
            type="deallocation",
            amount={"currency": "ofctbtc", "quantity": "4200"},
        ),
    )
    with pytest.raises(AllocationReleasedError) as info:
        sensor().poke({})
    exc = info.value
    assert isinstance(exc, AirflowFailException)
    text = str(exc)
    assert DEFAULT_ALLOCATION_ID in text
    assert "deallocation" in text
    assert "4200 ofctbtc" in text
    assert "insufficient balance" in text
    assert isinstance(exc.allocation, Allocation)
    assert exc.allocation.id == DEFAULT_ALLOCATION_ID
    assert exc.allocation.reason == "insufficient balance"
    assert requests_mock.call_count == 1


def test_unknown_status_not_done_with_warning(requests_mock: rm.Mocker, capsys: pytest.CaptureFixture[str]) -> None:
    requests_mock.get(URL, json=allocation_body(status="pending_review"))
    result = sensor().poke({})
    assert result.is_done is False
    assert result.xcom_value is None
    out = capsys.readouterr().out
    assert "warning" in out.lower()
    assert "pending_review" in out


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OESInvalidRequestError),
        (401, OESAuthenticationError),
        (403, OESPermissionDeniedError),
        (404, OESNotFoundError),
    ],
)
def test_permanent_errors_raise_at_once(
    requests_mock: rm.Mocker, no_sleep: list[float], status: int, cls: type[OESError]
) -> None:
    requests_mock.get(URL, status_code=status, json={"error": "no", "requestId": "r-1"})
    with pytest.raises(cls) as info:
        sensor().poke({})
    assert type(info.value) is cls
    assert info.value.request_id == "r-1"
    assert requests_mock.call_count == 1
    assert no_sleep == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_errors_after_retries_not_done(
    requests_mock: rm.Mocker, no_sleep: list[float], capsys: pytest.CaptureFixture[str], status: int
) -> None:
    requests_mock.get(URL, status_code=status, text="busy")
    result = sensor().poke({})
    assert result.is_done is False
    assert result.xcom_value is None
    assert requests_mock.call_count == 3  # first try + max_retries=2
    out = capsys.readouterr().out
    assert "warning" in out.lower()
    assert f"HTTP {status}" in out
    assert TOKEN not in out


def test_timeout_after_retries_not_done(requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    requests_mock.get(URL, exc=requests.exceptions.ReadTimeout)
    assert sensor().poke({}).is_done is False
    assert requests_mock.call_count == 3


def test_other_id_is_a_response_error(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(id=OTHER_ID, status="cleared"))
    with pytest.raises(OESResponseError, match="refusing"):
        sensor().poke({})


def test_invalid_body_is_a_response_error(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status=...))
    with pytest.raises(OESResponseError):
        sensor().poke({})


def test_enterprise_id_falls_back_to_connection(requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, json=allocation_body(status="cleared"))
    sensor().poke({})
    assert last_request(requests_mock).url == URL
    sensor(enterprise_id="other").poke({})
    assert "/enterprises/other/" in last_request(requests_mock).url


def test_bad_allocation_id_raises_without_request(requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, json=allocation_body())
    with pytest.raises(OESInvalidRequestError, match="'nope'"):
        sensor(allocation_id="nope").poke({})
    assert requests_mock.call_count == 0


def test_execute_poke_mode_sequence(requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    bodies = [allocation_body(status="reserved"), allocation_body(status="reserved"), allocation_body(status="cleared")]
    requests_mock.get(URL, [{"json": b} for b in bodies])
    result = sensor(poke_interval=0.01, timeout=60).execute({})
    assert result == bodies[-1]["allocation"]
    assert requests_mock.call_count == 3


def test_execute_poke_mode_timeout(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="reserved"))
    with pytest.raises(AirflowSensorTimeout):
        sensor(poke_interval=0.01, timeout=0.1).execute({})
    assert requests_mock.call_count >= 2


def test_execute_unknown_status_never_succeeds(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="pending_review"))
    with pytest.raises(AirflowSensorTimeout):
        sensor(poke_interval=0.01, timeout=0.1).execute({})


def test_execute_released_fails(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, [{"json": allocation_body()}, {"json": allocation_body(status="released")}])
    with pytest.raises(AllocationReleasedError):
        sensor(poke_interval=0.01, timeout=60).execute({})


def test_soft_fail_released_skips(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="released", reason="partner rejected"))
    with pytest.raises(AirflowSkipException):
        sensor(poke_interval=0.01, timeout=60, soft_fail=True).execute({})


def _event(**overrides: Any) -> dict[str, Any]:
    return {"status": "terminal", "allocation": allocation_record(**overrides), "enterprise_id": "ent1"}


def test_execute_complete_cleared() -> None:
    event = _event(status="cleared", reason=None, extraField=[1])
    assert sensor().execute_complete({}, event) == event["allocation"]


def test_execute_complete_released() -> None:
    with pytest.raises(AllocationReleasedError, match="insufficient funds") as info:
        sensor().execute_complete({}, _event(status="released", reason="insufficient funds"))
    assert info.value.allocation.is_released


@pytest.mark.parametrize("status", ["reserved", "pending_review"])
def test_execute_complete_not_final_is_an_error(status: str) -> None:
    with pytest.raises(OESResponseError, match="fired while"):
        sensor().execute_complete({}, _event(status=status))


def test_execute_complete_other_id_is_an_error() -> None:
    with pytest.raises(OESResponseError, match="refusing"):
        sensor().execute_complete({}, _event(id=OTHER_ID, status="cleared"))


@pytest.mark.parametrize("event", [None, {}, {"status": "terminal"}, {"status": "terminal", "allocation": "x"}])
def test_execute_complete_malformed_event(event: dict[str, Any] | None) -> None:
    with pytest.raises(OESResponseError):
        sensor().execute_complete({}, event)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OESInvalidRequestError),
        (401, OESAuthenticationError),
        (403, OESPermissionDeniedError),
        (404, OESNotFoundError),
        (429, OESRateLimitError),
        (503, OESServerError),
    ],
)
def test_execute_complete_error_event_rebuilds_the_error(status: int, cls: type[OESError]) -> None:
    exc = error_from_response(
        status, b'{"error": "bad", "requestId": "r-9"}', allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1"
    )
    event = {"status": "error", **error_to_payload(exc)}
    event = json.loads(json.dumps(event))
    with pytest.raises(cls) as info:
        sensor().execute_complete({}, event)
    assert type(info.value) is cls
    assert str(info.value) == str(exc)
    assert info.value.status_code == status
    assert info.value.request_id == "r-9"


def test_execute_complete_connection_error_event() -> None:
    exc = OESConnectionError("timed out", allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id="ent1")
    with pytest.raises(OESConnectionError, match="timed out"):
        sensor().execute_complete({}, {"status": "error", **error_to_payload(exc)})


def test_deferrable_cleared_first_returns_without_deferring(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="cleared"))
    result = sensor(deferrable=True).execute({})
    assert result == allocation_record(status="cleared")
    assert requests_mock.call_count == 1


def test_deferrable_released_first_fails_without_deferring(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, json=allocation_body(status="released"))
    with pytest.raises(AllocationReleasedError):
        sensor(deferrable=True).execute({})


def test_deferrable_reserved_defers_to_trigger(requests_mock: rm.Mocker) -> None:
    trigger_module = pytest.importorskip("airflow_provider_oes.triggers.allocation")
    requests_mock.get(URL, json=allocation_body(status="reserved"))
    s = sensor(deferrable=True, poke_interval=7, timeout=120)
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    deferred = info.value
    assert isinstance(deferred.trigger, trigger_module.AllocationStatusTrigger)
    assert deferred.trigger.allocation_id == DEFAULT_ALLOCATION_ID
    assert deferred.trigger.enterprise_id == "ent1"  # resolved from the connection before deferring
    assert deferred.trigger.oes_conn_id == "oes_default"
    assert deferred.trigger.poll_interval == 7.0
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=120)
    assert requests_mock.call_count == 1


def test_deferrable_transient_first_check_defers(requests_mock: rm.Mocker, no_sleep: list[float]) -> None:
    pytest.importorskip("airflow_provider_oes.triggers.allocation")
    requests_mock.get(URL, status_code=503)
    with pytest.raises(TaskDeferred):
        sensor(deferrable=True).execute({})


def test_deferrable_permanent_error_raises(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, status_code=401)
    with pytest.raises(OESAuthenticationError):
        sensor(deferrable=True).execute({})


def test_deferrable_soft_fail_released_first_skips(requests_mock: rm.Mocker) -> None:
    # Same rule as poke mode: soft_fail turns a released allocation into a skip, also on the first check.
    requests_mock.get(URL, json=allocation_body(status="released"))
    with pytest.raises(AirflowSkipException) as info:
        sensor(deferrable=True, soft_fail=True).execute({})
    assert isinstance(info.value.__cause__, AllocationReleasedError)


@pytest.mark.parametrize("deferrable", [False, True])
def test_soft_fail_permanent_error_skips_in_every_mode(requests_mock: rm.Mocker, deferrable: bool) -> None:
    # A permanent error is an AirflowFailException: Airflow's soft_fail rule turns it into a skip, in poke mode
    # and on the first deferrable check alike (as it already did when a deferred sensor resumed).
    requests_mock.get(URL, status_code=403)
    with pytest.raises(AirflowSkipException) as info:
        sensor(deferrable=deferrable, soft_fail=True, poke_interval=0.01, timeout=60).execute({})
    assert isinstance(info.value.__cause__, OESPermissionDeniedError)


def test_permanent_error_without_soft_fail_fails(requests_mock: rm.Mocker) -> None:
    requests_mock.get(URL, status_code=403)
    with pytest.raises(OESPermissionDeniedError):
        sensor(deferrable=True).execute({})


def test_soft_fail_released_resume_skips() -> None:
    # After the trigger fired, Airflow's resume_execution applies soft_fail to execute_complete's error.
    s = sensor(deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        s.resume_execution("execute_complete", {"event": _event(status="released")}, {})
