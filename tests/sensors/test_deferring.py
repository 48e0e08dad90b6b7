"""The one rule of both deferring sensors for ``deferrable``, ``start_from_trigger`` and ``end_from_trigger``
(:class:`~airflow_provider_oes.sensors._deferring.DeferringSensor`), each case run against both sensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.sensors import _deferring
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.sensors.settlement import SettlementStatusSensor
from tests._factories import DEFAULT_ALLOCATION_ID

if TYPE_CHECKING:
    from airflow_provider_oes.sensors._deferring import DeferringSensor

SETTLEMENT_ID = "c3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
TRIGGERS = {
    "allocation": "airflow_provider_oes.triggers.allocation.AllocationStatusTrigger",
    "settlement": "airflow_provider_oes.triggers.settlement.SettlementStatusTrigger",
}


@pytest.fixture(params=["allocation", "settlement"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sensor(kind: str, **kwargs: Any) -> DeferringSensor:
    if kind == "allocation":
        return AllocationStatusSensor(task_id="wait", allocation_id=DEFAULT_ALLOCATION_ID, **kwargs)
    return SettlementStatusSensor(task_id="wait", settlement_id=SETTLEMENT_ID, **kwargs)


def test_end_from_trigger_without_deferring_is_turned_off_with_a_warning(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sensor = _sensor(kind, end_from_trigger=True, deferrable=False)
    assert sensor.deferrable is False
    assert sensor.end_from_trigger is False
    out = capsys.readouterr().out
    assert (
        "end_from_trigger has no effect on task wait: it waits in the triggerer only with deferrable=True or "
        "start_from_trigger=True." in out
    )
    assert "needs an Airflow" not in out


def test_end_from_trigger_with_deferrable_takes_effect(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    sensor = _sensor(kind, end_from_trigger=True, deferrable=True)
    assert sensor.end_from_trigger is True
    assert sensor.start_from_trigger is False
    assert "end_from_trigger" not in capsys.readouterr().out


def test_not_asked_is_off_without_a_warning(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    for deferrable in (False, True):
        assert _sensor(kind, deferrable=deferrable).end_from_trigger is False
    assert capsys.readouterr().out == ""


def test_start_from_trigger_implies_deferrable_and_hands_end_from_trigger_to_the_triggerer(
    kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_deferring, "airflow_renders_start_trigger_templates", lambda: True)
    sensor = _sensor(kind, start_from_trigger=True, end_from_trigger=True, deferrable=False, timeout=77)
    assert sensor.deferrable is True
    assert sensor.start_from_trigger is True
    assert sensor.end_from_trigger is True
    args = sensor.start_trigger_args
    assert args is not None
    assert args.trigger_cls == TRIGGERS[kind]
    assert args.trigger_kwargs is not None
    assert args.trigger_kwargs["end_from_trigger"] is True
    assert args.trigger_kwargs["oes_conn_id"] == "oes_default"
    assert args.next_method == "execute_complete"
    assert args.timeout is not None
    assert args.timeout.total_seconds() == 77
    assert capsys.readouterr().out == ""


def test_start_from_trigger_before_airflow_3_3_defers_from_a_worker(
    kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_deferring, "airflow_renders_start_trigger_templates", lambda: False)
    sensor = _sensor(kind, start_from_trigger=True, end_from_trigger=True)
    assert sensor.start_from_trigger is False
    assert sensor.deferrable is True
    assert sensor.end_from_trigger is True  # deferring from a worker, the trigger still ends the task
    assert "start_from_trigger needs Airflow 3.3 or later" in capsys.readouterr().out


def test_without_task_end_events_end_from_trigger_is_turned_off_with_a_warning(
    kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_deferring, "airflow_ends_tasks_from_triggers", lambda: False)
    monkeypatch.setattr(_deferring, "airflow_renders_start_trigger_templates", lambda: True)
    for kwargs in ({"deferrable": True}, {"start_from_trigger": True}):
        sensor = _sensor(kind, end_from_trigger=True, **kwargs)
        assert sensor.deferrable is True
        assert sensor.end_from_trigger is False
        if sensor.start_from_trigger:
            assert sensor.start_trigger_args is not None
            assert sensor.start_trigger_args.trigger_kwargs is not None
            assert sensor.start_trigger_args.trigger_kwargs["end_from_trigger"] is False
    out = capsys.readouterr().out
    assert out.count("end_from_trigger needs an Airflow whose triggers can end their task") == 2
    assert "has no effect" not in out
