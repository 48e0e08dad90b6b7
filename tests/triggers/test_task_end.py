"""``end_from_trigger``: the event the trigger yields in each case, and when a task must resume on a worker.

The shared poller is replaced by a registration that hands back a chosen payload, so each case is exactly one
event; ``tests/triggers/test_allocation_trigger.py`` runs the trigger against the simulator.
"""

from __future__ import annotations

import asyncio
import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import DAG, Asset, task
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from airflow_provider_oes.exceptions import AllocationReleasedError, OESNotFoundError
from airflow_provider_oes.models import Allocation
from airflow_provider_oes.sensors._deferring import airflow_renders_start_trigger_templates
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers import _polling as _poller
from airflow_provider_oes.triggers import _task_end
from airflow_provider_oes.triggers._events import error_event, terminal_event
from airflow_provider_oes.triggers._task_end import cleared_record, worker_needed
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests._factories import DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID, allocation_record

if TYPE_CHECKING:
    from collections.abc import Callable

# Started from the triggerer (Airflow 3.3+); before 3.3 the sensor defers from a worker (the sensor decides).
needs_airflow_3_3 = pytest.mark.skipif(
    not airflow_renders_start_trigger_templates(),
    reason="start_from_trigger renders templated trigger arguments in the triggerer from Airflow 3.3 on",
)

_REAL_PUSH = _task_end.push_return_value

OTHER_ID = "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
CLEARED = terminal_event(
    Allocation.from_json_dict(
        allocation_record(status="cleared", amount={"currency": "ofctbtc", "quantity": "12345678901234567890123"})
    ),
    DEFAULT_ENTERPRISE_ID,
)
RELEASED = terminal_event(
    Allocation.from_json_dict(allocation_record(status="released", reason="partner rejected")), DEFAULT_ENTERPRISE_ID
)
NOT_FOUND = error_event(OESNotFoundError("allocation not found", status_code=404), DEFAULT_ALLOCATION_ID)


class _Registration:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.cancelled = False

    async def wait(self) -> dict[str, Any]:
        return self.payload

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def poller_answers(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], None]:
    """``answer(payload)``: the shared poller hands every trigger that registers ``payload``."""

    def answer(payload: dict[str, Any]) -> None:
        async def register(*args: Any, **kwargs: Any) -> _Registration:
            return _Registration(payload)

        monkeypatch.setattr(_poller, "register", register)

    return answer


@pytest.fixture(autouse=True)
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """``(task instance, value)`` of each ``return_value`` XCom the trigger pushed (no triggerer here)."""
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(_task_end, "push_return_value", lambda ti, value: calls.append((ti, value)))
    return calls


def _events(trigger: AllocationStatusTrigger) -> list[TriggerEvent]:
    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), 10))


def _trigger(end_from_trigger: bool | None = True, task: Any = None) -> AllocationStatusTrigger:
    trigger = AllocationStatusTrigger(
        DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID, "oes_default", 5.0, end_from_trigger=end_from_trigger
    )
    ti = SimpleNamespace(dag_id="end_fleet", task_id="wait", run_id="r1", map_index=0)
    if task is not None:
        ti.task = task
    trigger.task_instance = ti  # type: ignore[assignment]
    return trigger


def _sensor(**kwargs: Any) -> AllocationStatusSensor:
    return AllocationStatusSensor(task_id="wait", allocation_id=DEFAULT_ALLOCATION_ID, deferrable=True, **kwargs)


# ----------------------------------------------------------------------------- the event in each case


def test_cleared_pushes_exactly_what_execute_complete_returns_then_ends_the_task(
    poller_answers: Callable[[dict[str, Any]], None], pushed: list[tuple[Any, Any]]
) -> None:
    poller_answers(CLEARED)
    trigger = _trigger()
    [event] = _events(trigger)
    assert isinstance(event, TaskSuccessEvent)
    # The XCom went the worker's way, not in the event (whose XComs Airflow would store JSON-encoded).
    assert event.xcoms is None
    resumed = _sensor(enterprise_id=DEFAULT_ENTERPRISE_ID).execute_complete({}, event=CLEARED)
    assert pushed == [(trigger.task_instance, resumed)]
    assert resumed["amount"]["quantity"] == "12345678901234567890123"  # exact, a string


def test_an_xcom_that_cannot_be_pushed_resumes_on_a_worker(
    poller_answers: Callable[[dict[str, Any]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    poller_answers(CLEARED)
    # The real push, outside a triggerer: no supervisor to send the XCom to.
    monkeypatch.undo()
    poller_answers(CLEARED)
    [event] = _events(_trigger())
    assert type(event) is TriggerEvent
    assert event.payload == CLEARED  # the worker pushes it, as without end_from_trigger


def test_without_a_task_instance_the_task_resumes_on_a_worker(
    poller_answers: Callable[[dict[str, Any]], None], pushed: list[tuple[Any, Any]]
) -> None:
    # dag.test() runs the trigger in process without one (Airflow 3.2.2 and 3.3.2): the task resumes as before.
    poller_answers(CLEARED)
    trigger = AllocationStatusTrigger(DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID, end_from_trigger=True)
    [event] = _events(trigger)
    assert type(event) is TriggerEvent
    assert pushed == []


def test_the_push_goes_to_the_task_instance_of_the_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import xcom

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(xcom.XCom, "set", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(_task_end, "push_return_value", _REAL_PUSH)
    ti = SimpleNamespace(dag_id="d", task_id="wait", run_id="r", map_index=7)
    _task_end.push_return_value(ti, {"id": DEFAULT_ALLOCATION_ID})
    assert calls == [
        {
            "key": "return_value",
            "value": {"id": DEFAULT_ALLOCATION_ID},
            "dag_id": "d",
            "task_id": "wait",
            "run_id": "r",
            "map_index": 7,
        }
    ]


def test_the_task_end_event_survives_the_triggerer_to_supervisor_serialization(
    poller_answers: Callable[[dict[str, Any]], None],
) -> None:
    from airflow.triggers.base import DiscrimatedTriggerEvent
    from pydantic import TypeAdapter

    poller_answers(CLEARED)
    [event] = _events(_trigger())
    adapter: TypeAdapter[Any] = TypeAdapter(DiscrimatedTriggerEvent)
    rebuilt = adapter.validate_json(adapter.dump_json(event))
    assert isinstance(rebuilt, TaskSuccessEvent)
    assert rebuilt.payload == event.payload == "success"


@pytest.mark.parametrize(
    ("payload", "error", "reason"),
    [(RELEASED, AllocationReleasedError, "partner rejected"), (NOT_FOUND, OESNotFoundError, "not found")],
    ids=["released", "permanent-error"],
)
def test_released_and_permanent_errors_resume_on_a_worker(
    poller_answers: Callable[[dict[str, Any]], None], payload: dict[str, Any], error: type[Exception], reason: str
) -> None:
    poller_answers(payload)
    [event] = _events(_trigger())
    # A plain event: the task resumes on a worker, where the sensor fails it without retries, with the reason.
    assert type(event) is TriggerEvent
    assert event.payload == payload
    with pytest.raises(error) as raised:
        _sensor().execute_complete({}, event=event.payload)
    assert type(raised.value) is error
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    "payload",
    [
        {**CLEARED, "allocation": {**CLEARED["allocation"], "id": OTHER_ID}},  # another allocation
        {**CLEARED, "allocation": {**CLEARED["allocation"], "status": "reserved"}},  # not final
        {**CLEARED, "status": "success"},  # unknown kind
        {**CLEARED, "allocation": {"status": "cleared"}},  # not a valid record
    ],
    ids=["other-id", "not-final", "unknown-kind", "invalid-record"],
)
def test_an_event_that_does_not_check_out_never_ends_the_task(
    poller_answers: Callable[[dict[str, Any]], None], payload: dict[str, Any]
) -> None:
    poller_answers(payload)
    [event] = _events(_trigger())
    assert type(event) is TriggerEvent  # the worker rejects it, as without end_from_trigger
    assert cleared_record(payload, allocation_id=DEFAULT_ALLOCATION_ID, enterprise_id=DEFAULT_ENTERPRISE_ID) is None


def test_without_end_from_trigger_a_cleared_allocation_resumes_on_a_worker(
    poller_answers: Callable[[dict[str, Any]], None],
) -> None:
    poller_answers(CLEARED)
    [event] = _events(_trigger(end_from_trigger=False))
    assert type(event) is TriggerEvent
    assert event.payload == CLEARED


def test_the_trigger_never_fails_or_skips_a_task_itself(poller_answers: Callable[[dict[str, Any]], None]) -> None:
    # TaskFailedEvent goes through retries (3.3.1+) and carries no reason; soft_fail is applied on the worker.
    for payload in (CLEARED, RELEASED, NOT_FOUND):
        poller_answers(payload)
        [event] = _events(_trigger())
        assert not isinstance(event, (TaskFailedEvent, TaskSkippedEvent))


# ----------------------------------------------------------------------------- the task decides (started from the triggerer)


def _serialized_task(build: Callable[[], Any]) -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("end_fleet", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        build()
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("wait")


def _stored_kwargs(task: Any) -> dict[str, Any]:
    """The trigger kwargs as the scheduler stores them and the triggerer reads them back."""
    from airflow.models.trigger import Trigger

    return dict(Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(task.start_trigger_args.trigger_kwargs)))


@needs_airflow_3_3
def test_mapped_sensor_started_from_the_trigger_takes_end_from_trigger_from_its_partial(
    poller_answers: Callable[[dict[str, Any]], None],
) -> None:
    poller_answers(CLEARED)
    ends = _serialized_task(
        lambda: AllocationStatusSensor.partial(task_id="wait", start_from_trigger=True, end_from_trigger=True).expand(
            allocation_id=[DEFAULT_ALLOCATION_ID]
        )
    )
    resumes = _serialized_task(
        lambda: AllocationStatusSensor.partial(task_id="wait", start_from_trigger=True).expand(
            allocation_id=[DEFAULT_ALLOCATION_ID]
        )
    )
    assert _stored_kwargs(ends)["end_from_trigger"] is None  # decided in the triggerer
    assert isinstance(_events(_trigger(end_from_trigger=None, task=ends))[0], TaskSuccessEvent)
    assert type(_events(_trigger(end_from_trigger=None, task=resumes))[0]) is TriggerEvent


def test_mapped_sensor_with_outlets_resumes_on_a_worker(poller_answers: Callable[[dict[str, Any]], None]) -> None:
    poller_answers(CLEARED)
    with_outlets = _serialized_task(
        lambda: AllocationStatusSensor.partial(
            task_id="wait", start_from_trigger=True, end_from_trigger=True, outlets=[Asset("oes://cleared")]
        ).expand(allocation_id=[DEFAULT_ALLOCATION_ID])
    )
    assert "outlets" in str(worker_needed(with_outlets))
    [event] = _events(_trigger(end_from_trigger=None, task=with_outlets))
    assert type(event) is TriggerEvent
    assert event.payload == CLEARED


def test_mapped_sensor_without_xcom_push_resumes_on_a_worker(poller_answers: Callable[[dict[str, Any]], None]) -> None:
    poller_answers(CLEARED)
    quiet = _serialized_task(
        lambda: AllocationStatusSensor.partial(
            task_id="wait", start_from_trigger=True, end_from_trigger=True, do_xcom_push=False
        ).expand(allocation_id=[DEFAULT_ALLOCATION_ID])
    )
    assert worker_needed(quiet) == "do_xcom_push is False"
    assert type(_events(_trigger(end_from_trigger=None, task=quiet))[0]) is TriggerEvent


def test_unmapped_sensor_started_from_the_trigger_is_checked_in_the_triggerer(
    poller_answers: Callable[[dict[str, Any]], None],
) -> None:
    poller_answers(CLEARED)

    def build() -> None:
        sensor = AllocationStatusSensor(
            task_id="wait", allocation_id=DEFAULT_ALLOCATION_ID, start_from_trigger=True, end_from_trigger=True
        )

        @task
        def fan_out(value: str) -> str:
            return value

        # Expanding over the sensor's output needs the map length a worker records.
        fan_out.expand(value=sensor.output)

    task_ = _serialized_task(build)
    if airflow_renders_start_trigger_templates():
        assert _stored_kwargs(task_)["end_from_trigger"] is True
    assert "expands over its output" in str(worker_needed(task_))
    assert type(_events(_trigger(end_from_trigger=True, task=task_))[0]) is TriggerEvent


# ----------------------------------------------------------------------------- the sensor decides (deferring from a worker)


def _deferred_trigger(sensor: AllocationStatusSensor, monkeypatch: pytest.MonkeyPatch) -> AllocationStatusTrigger:
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setattr(type(sensor.hook), "resolve_enterprise_id", lambda self, value: DEFAULT_ENTERPRISE_ID)
    with pytest.raises(TaskDeferred) as deferred:
        sensor._defer_to_trigger()
    trigger = deferred.value.trigger
    assert isinstance(trigger, AllocationStatusTrigger)
    return trigger


@pytest.mark.parametrize(
    ("kwargs", "ends"),
    [
        ({"end_from_trigger": True}, True),
        ({}, False),
        ({"end_from_trigger": True, "outlets": [Asset("oes://cleared")]}, False),
        ({"end_from_trigger": True, "do_xcom_push": False}, False),
        ({"end_from_trigger": True, "multiple_outputs": True}, False),
    ],
    ids=["asked", "not-asked", "outlets", "no-xcom-push", "multiple-outputs"],
)
def test_a_deferring_sensor_asks_its_trigger_to_end_it_only_when_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], ends: bool
) -> None:
    trigger = _deferred_trigger(_sensor(**kwargs), monkeypatch)
    assert trigger.end_from_trigger is ends
    assert ("end_from_trigger" in trigger.serialize()[1]) is ends


# ----------------------------------------------------------------------------- serialization


def test_end_from_trigger_round_trips_and_is_absent_when_off() -> None:
    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string

    on = _trigger(end_from_trigger=True)
    classpath, kwargs = on.serialize()
    assert kwargs["end_from_trigger"] is True
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs))
    assert import_string(classpath)(**stored).end_from_trigger is True
    # Off: the same kwargs as before the option existed (triggers stored by older versions rebuild unchanged).
    assert "end_from_trigger" not in _trigger(end_from_trigger=False).serialize()[1]
    assert AllocationStatusTrigger(DEFAULT_ALLOCATION_ID, DEFAULT_ENTERPRISE_ID).end_from_trigger is False
    assert "end_from_trigger=True" in repr(on)


# ----------------------------------------------------------------------------- Airflow without the pieces


def test_without_task_end_events_the_sensor_says_so_at_parse_and_resumes_on_a_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_oes.sensors import _deferring

    monkeypatch.setattr(_deferring, "airflow_ends_tasks_from_triggers", lambda: False)
    sensor = _sensor(end_from_trigger=True)
    assert sensor.end_from_trigger is False
    assert "end_from_trigger needs an Airflow whose triggers can end their task" in capsys.readouterr().out
    assert _deferred_trigger(sensor, monkeypatch).end_from_trigger is False


def test_this_airflow_can_end_tasks_from_triggers() -> None:
    # Every supported Airflow (the 3.2.2 floor included) has it: this fails the floor job if one does not.
    from airflow_provider_oes.sensors._deferring import airflow_ends_tasks_from_triggers

    assert airflow_ends_tasks_from_triggers() is True


def test_end_from_trigger_without_deferring_warns(capsys: pytest.CaptureFixture[str]) -> None:
    sensor = AllocationStatusSensor(task_id="wait", allocation_id=DEFAULT_ALLOCATION_ID, end_from_trigger=True)
    assert sensor.deferrable is False
    # Turned off, as for the settlement sensor (the rule for both: tests/sensors/test_deferring.py).
    assert sensor.end_from_trigger is False
    assert "end_from_trigger has no effect" in capsys.readouterr().out
