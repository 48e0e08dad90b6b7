"""Property: whatever the faults, the sensor succeeds only when the allocation really is ``cleared``.

Hypothesis draws a schedule of API answers (transient faults, permanent errors, malformed bodies,
``reserved`` reads, unknown statuses, other allocations' ``cleared`` records) followed by the
allocation's true final state. requests-mock replays the schedule to the real hook inside
``AllocationStatusSensor.poke``, poked up to a bounded number of times (the sensor's ``timeout``).
The same faults over real HTTP are covered one by one in ``test_faults.py``.

An independent oracle computes the expected outcome from the schedule; the test asserts the exact
outcome and, separately, the one rule that matters: no success unless the truth is ``cleared``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import requests
import requests_mock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_oes.exceptions import AllocationReleasedError, OESError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from tests.reliability._support import FIGURES, connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

ALLOCATION_ID = "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
HOST = "https://oes.example.test"
MAX_RETRIES = 2
ATTEMPTS = MAX_RETRIES + 1
MAX_POKES = 8
"""Pokes before the sensor counts as timed out (stands in for the sensor's ``timeout``)."""

TRANSIENT = ("500", "502", "503", "504", "429", "429-retry-after", "connect-timeout", "read-timeout", "reset", "drop")
PERMANENT = ("400", "401", "403", "404", "non_json", "missing_fields", "wrong_types", "wrong_id", "not_an_object")
WAITING = ("reserved", "unknown_status")
TRUTHS = ("cleared", "released", "reserved", "unknown_status")

TALLY: Counter[str] = Counter()


def _xcom(result: Any) -> dict[str, Any]:
    """The XCom value of a finished poke, checked to be the allocation's JSON object."""
    value = result.xcom_value
    assert isinstance(value, dict)
    return value


def _record(status: str, allocation_id: str = ALLOCATION_ID) -> dict[str, Any]:
    return {
        "id": allocation_id,
        "amount": {"currency": "ofctbtc", "quantity": "100000000"},
        "connectionId": "6f1c0b7e-3d2a-4c5b-9e8f-1a2b3c4d5e6f",
        "clientExternalId": "client-1",
        "initiatedBy": "user-1",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:01.000Z",
        "retriable": False,
        "reason": "insufficient balance" if status == "released" else None,
        "status": status,
        "type": "allocation",
    }


def _answer(kind: str) -> dict[str, Any]:
    """The requests-mock response for one scheduled answer."""
    errors = {"error": "simulated", "name": "SimulatedError", "requestId": "req-1"}
    if kind in {"500", "502", "503", "504", "400", "401", "403", "404"}:
        return {"status_code": int(kind), "json": errors}
    if kind == "429":
        return {"status_code": 429, "json": errors}
    if kind == "429-retry-after":
        return {"status_code": 429, "json": errors, "headers": {"Retry-After": "7"}}
    if kind == "connect-timeout":
        return {"exc": requests.exceptions.ConnectTimeout}
    if kind == "read-timeout":
        return {"exc": requests.exceptions.ReadTimeout}
    if kind == "reset":
        return {"exc": requests.exceptions.ConnectionError}
    if kind == "drop":
        # A cleared record of another allocation, cut in half: must be a dropped connection, nothing else.
        body = json.dumps({"allocation": _record("cleared", str(uuid.uuid4()))}).encode()
        return {"status_code": 200, "content": body[: len(body) // 2], "headers": {"Content-Length": str(len(body))}}
    if kind == "non_json":
        return {"status_code": 200, "text": "<html>cleared</html>"}
    if kind == "not_an_object":
        return {"status_code": 200, "json": ["cleared"]}
    if kind == "missing_fields":
        record = _record("cleared")
        del record["status"]
        return {"status_code": 200, "json": {"allocation": record}}
    if kind == "wrong_types":
        record = _record("cleared")
        record["amount"]["quantity"] = 1e8
        return {"status_code": 200, "json": {"allocation": record}}
    if kind == "wrong_id":
        return {"status_code": 200, "json": {"allocation": _record("cleared", str(uuid.uuid4()))}}
    if kind == "unknown_status":
        return {"status_code": 200, "json": {"allocation": _record("pending_review")}}
    return {"status_code": 200, "json": {"allocation": _record(kind)}}


def _oracle(schedule: list[str], truth: str) -> str:
    """Expected outcome, from the issue's rules alone (independent of the provider's code)."""
    answers = iter([*schedule])
    for _ in range(MAX_POKES):
        for attempt in range(ATTEMPTS):
            kind = next(answers, truth)
            if kind in TRANSIENT:
                if attempt == ATTEMPTS - 1:
                    break  # retries used up: this poke waits
                continue
            if kind in PERMANENT:
                return "failed"
            if kind == "released":
                return "failed"
            if kind == "cleared":
                return "success"
            break  # reserved or unknown status: this poke waits
    return "timed out"


def _run_sensor() -> tuple[str, int]:
    sensor = AllocationStatusSensor(task_id="wait", allocation_id=ALLOCATION_ID)
    try:
        for poke in range(1, MAX_POKES + 1):
            result = sensor.poke({})
            if result.is_done:
                assert _xcom(result)["id"] == ALLOCATION_ID
                assert _xcom(result)["status"] == "cleared"
                return "success", poke
        return "timed out", MAX_POKES
    except AllocationReleasedError:
        return "failed", 0
    except OESError as exc:
        if exc.transient:
            pytest.fail(f"a transient error escaped the sensor: {exc!r}")
        return "failed", 0
    finally:
        sensor.hook.close()


@pytest.fixture(scope="module", autouse=True)
def _connection() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_OES_DEFAULT", connection_json(HOST, max_retries=MAX_RETRIES, retry_max_wait=0))
        yield


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\noutcome property tally: {dict(sorted(TALLY.items()))}")


answers = st.sampled_from(TRANSIENT + PERMANENT + WAITING)
# Mostly transient and waiting answers, so that many schedules reach the true state.
schedules = st.lists(
    st.one_of(st.sampled_from(TRANSIENT), st.sampled_from(WAITING), st.sampled_from(TRANSIENT), answers),
    max_size=14,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules, truth=st.sampled_from(TRUTHS))
def test_sensor_outcome_never_lies(schedule: list[str], truth: str) -> None:
    """The sensor's outcome equals the oracle's; and success only ever on a true ``cleared``."""
    with requests_mock.Mocker() as mock:
        mock.get(requests_mock.ANY, [_answer(kind) for kind in [*schedule, truth]])
        outcome, _ = _run_sensor()
    TALLY["examples"] += 1
    TALLY[f"truth={truth} -> {outcome}"] += 1
    FIGURES["hypothesis examples (outcome property)"] += 1
    false_success = outcome == "success" and truth != "cleared"
    FIGURES["false successes"] += int(false_success)
    assert not false_success, f"success while the allocation is {truth!r}: {schedule}"
    assert outcome == _oracle(schedule, truth), f"schedule {schedule}, truth {truth!r}"
    if mock.call_count:
        assert all(r.url.startswith(HOST) for r in mock.request_history)


# ----------------------------------------------------------------------------- deferrable resume
def _event_record(draw: st.DrawFn) -> Any:
    other = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    allocation_id = draw(st.sampled_from([ALLOCATION_ID] * 4 + [ALLOCATION_ID.upper(), other, "", "not-an-id"]))
    status = draw(
        st.sampled_from(["cleared"] * 4 + ["released", "reserved", "pending_review", "CLEARED", "cleared ", ""])
    )
    record: dict[str, Any] = _record(status, allocation_id)
    corruption = draw(
        st.sampled_from([None] * 5 + ["drop_id", "drop_status", "drop_amount", "float_quantity", "int_status"])
    )
    if corruption == "drop_id":
        del record["id"]
    elif corruption == "drop_status":
        del record["status"]
    elif corruption == "drop_amount":
        del record["amount"]
    elif corruption == "float_quantity":
        record["amount"]["quantity"] = 1e8
    elif corruption == "int_status":
        record["status"] = 1
    return draw(st.sampled_from([record] * 4 + [None, [record], "cleared", {"allocation": record}]))


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {}
    kind = draw(st.sampled_from(["terminal"] * 4 + ["error", "cleared", "success", None]))
    if kind is not None:
        event["status"] = kind
    if draw(st.integers(0, 5)):  # mostly present
        event["allocation"] = _event_record(draw)
    if draw(st.booleans()):
        event["enterprise_id"] = draw(st.sampled_from(["ent", "", None]))
    if kind == "error":
        event["error_type"] = draw(st.sampled_from(["OESServerError", "OESNotFoundError", "Bogus", None]))
        event["message"] = draw(st.text(max_size=20))
    return event


@settings(max_examples=500, deadline=None)
@given(event=events())
def test_deferred_resume_never_lies(event: dict[str, Any]) -> None:
    """Whatever event reaches ``execute_complete``, the task succeeds only on this allocation's ``cleared``
    record (the trigger path's last line of defence); anything else fails the task with an Airflow error."""
    from airflow.sdk.exceptions import AirflowException

    sensor = AllocationStatusSensor(task_id="wait", allocation_id=ALLOCATION_ID, deferrable=True)
    record = event.get("allocation")
    truly_cleared = (
        event.get("status") == "terminal"
        and isinstance(record, dict)
        and isinstance(record.get("id"), str)
        and record["id"].lower() == ALLOCATION_ID
        and record.get("status") == "cleared"
        and isinstance(record.get("amount"), dict)
        and isinstance(record["amount"].get("quantity"), str)
    )
    FIGURES["hypothesis examples (deferred resume property)"] += 1
    try:
        value = sensor.execute_complete({}, event)
    except AirflowException:
        outcome = "failed"
    else:
        outcome = "success"
        assert isinstance(value, dict)
        assert value["status"] == "cleared"
        assert value["id"].lower() == ALLOCATION_ID
    TALLY[f"resume: {'cleared' if truly_cleared else 'not cleared'} -> {outcome}"] += 1
    false_success = outcome == "success" and not truly_cleared
    FIGURES["false successes"] += int(false_success)
    assert not false_success, event
    assert outcome == ("success" if truly_cleared else "failed"), event
