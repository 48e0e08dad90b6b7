"""start_from_trigger: the sensor goes from the scheduler straight to the triggerer (Airflow 3.3+).

The DAG is serialized and deserialized as the scheduler and triggerer see it, and the trigger is built and
rendered the way Airflow 3.3.2 does it (``TaskInstance.defer_task`` takes ``task.start_trigger_args``; the
triggerer sets ``trigger.task_instance`` and calls ``render_template_fields`` with the task instance's context).
"""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_oes.sensors import _deferring
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

# These tests serialize the DAG and render the trigger as the Airflow 3.3 scheduler and triggerer do; before
# 3.3 the sensor falls back to deferring from a worker, which the last test checks on every version.
needs_airflow_3_3 = pytest.mark.skipif(
    not _deferring.airflow_renders_start_trigger_templates(),
    reason="start_from_trigger renders templated trigger arguments in the triggerer from Airflow 3.3 on",
)

IDS = [
    "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
    "b3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
    "c3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
]


def _serialized(dag: DAG) -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _started_trigger(task: Any, map_index: int, params: dict[str, Any] | None = None) -> AllocationStatusTrigger:
    """What the scheduler creates and the triggerer renders for one task instance of ``task``."""
    assert task.start_from_trigger is True  # TaskInstance.start_trigger_args checks exactly this
    args = task.start_trigger_args
    assert args.trigger_cls == "airflow_provider_oes.triggers.allocation.AllocationStatusTrigger"
    assert args.next_method == "execute_complete"
    from airflow.models.trigger import Trigger

    # The scheduler stores the kwargs in the trigger row; the triggerer reads them back (Trigger.kwargs).
    kwargs = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(args.trigger_kwargs))
    trigger = AllocationStatusTrigger(**kwargs)
    trigger.task_instance = SimpleNamespace(task=task, task_id=task.task_id, map_index=map_index)  # type: ignore[assignment]
    context = {"task": task, "ti": SimpleNamespace(map_index=map_index), "params": params or {}}
    trigger.render_template_fields(context)  # type: ignore[arg-type]
    return trigger


@needs_airflow_3_3
def test_unmapped_sensor_starts_from_the_trigger_with_rendered_templates() -> None:
    with DAG("sft_one", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        AllocationStatusSensor(
            task_id="one",
            allocation_id="{{ params.aid }}",
            oes_conn_id="my_oes",
            start_from_trigger=True,
            poke_interval=7,
            timeout=120,
        )
    task = _serialized(dag).get_task("one")
    assert task.start_trigger_args.timeout == datetime.timedelta(seconds=120)
    trigger = _started_trigger(task, -1, {"aid": IDS[1]})
    assert trigger.allocation_id == IDS[1]
    assert trigger.oes_conn_id == "my_oes"
    assert trigger.enterprise_id == ""  # resolved from the connection in the triggerer
    assert trigger.poll_interval == 7.0
    assert "last_check" not in trigger.serialize()[1]  # no check happened: the poller checks it by id first


@needs_airflow_3_3
def test_mapped_fleet_gets_each_index_its_own_allocation() -> None:
    with DAG("sft_fleet", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        AllocationStatusSensor.partial(
            task_id="fleet", start_from_trigger=True, poke_interval=5, enterprise_id="ent-9"
        ).expand(allocation_id=IDS)
    task = _serialized(dag).get_task("fleet")
    triggers = [_started_trigger(task, index) for index in range(len(IDS))]
    assert [t.allocation_id for t in triggers] == IDS
    assert {t.enterprise_id for t in triggers} == {"ent-9"}
    assert {t.oes_conn_id for t in triggers} == {"oes_default"}
    assert {t._checked_poll_interval() for t in triggers} == {5.0}  # from partial(poke_interval=5)


def test_mapped_fleet_without_start_from_trigger_starts_on_workers() -> None:
    with DAG("sft_plain", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        AllocationStatusSensor.partial(task_id="fleet", deferrable=True).expand(allocation_id=IDS)
    assert _serialized(dag).get_task("fleet").start_from_trigger is False


def test_start_from_trigger_implies_deferrable_and_falls_back_before_3_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deferring, "airflow_renders_start_trigger_templates", lambda: True)
    sensor = AllocationStatusSensor(task_id="s", allocation_id=IDS[0], start_from_trigger=True, deferrable=False)
    assert sensor.deferrable is True
    assert sensor.start_from_trigger is True
    monkeypatch.setattr(_deferring, "airflow_renders_start_trigger_templates", lambda: False)
    old = AllocationStatusSensor(task_id="s2", allocation_id=IDS[0], start_from_trigger=True)
    assert old.start_from_trigger is False  # Airflow 3.2: deferring from the worker instead
    assert old.deferrable is True


@needs_airflow_3_3
def test_mapped_fleet_keeps_the_sensor_timeout() -> None:
    # The scheduler takes a start_from_trigger task's trigger timeout only from start_trigger_args: without it
    # a mapped fleet never times out.
    with DAG("sft_timeout", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        AllocationStatusSensor.partial(task_id="fleet", start_from_trigger=True, timeout=600).expand(allocation_id=IDS)
        AllocationStatusSensor.partial(
            task_id="td", start_from_trigger=True, timeout=datetime.timedelta(hours=2)
        ).expand(allocation_id=IDS)
    serialized = _serialized(dag)
    assert serialized.get_task("fleet").start_trigger_args.timeout == datetime.timedelta(seconds=600)
    assert serialized.get_task("td").start_trigger_args.timeout == datetime.timedelta(hours=2)
    assert [_started_trigger(serialized.get_task("fleet"), i).allocation_id for i in range(3)] == IDS


@needs_airflow_3_3
def test_mapped_fleet_timeout_from_default_args_or_airflow_default() -> None:
    from airflow.sdk import conf

    with DAG(
        "sft_default_timeout", schedule=None, start_date=datetime.datetime(2026, 1, 1), default_args={"timeout": 90}
    ) as dag:
        AllocationStatusSensor.partial(task_id="fleet", start_from_trigger=True).expand(allocation_id=IDS)
    with DAG("sft_airflow_timeout", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as plain:
        AllocationStatusSensor.partial(task_id="fleet", start_from_trigger=True).expand(allocation_id=IDS)
    assert _serialized(dag).get_task("fleet").start_trigger_args.timeout == datetime.timedelta(seconds=90)
    expected = datetime.timedelta(seconds=conf.getfloat("sensors", "default_timeout"))
    assert _serialized(plain).get_task("fleet").start_trigger_args.timeout == expected


@needs_airflow_3_3
def test_mapped_fleet_rejects_an_expanded_timeout() -> None:
    with DAG("sft_mapped_timeout", schedule=None, start_date=datetime.datetime(2026, 1, 1)):
        partial = AllocationStatusSensor.partial(task_id="fleet", start_from_trigger=True)
        with pytest.raises(ValueError, match="timeout must be given to partial"):
            partial.expand(allocation_id=IDS, timeout=[1, 2, 3])


@needs_airflow_3_3
def test_docs_fleet_recipe() -> None:
    # docs/fleets.rst includes this DAG: a mapped fleet started from the triggerer, its timeout kept.
    # [START howto_sensor_start_from_trigger_fleet]
    with DAG("settle_fleet", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
        AllocationStatusSensor.partial(
            task_id="wait",
            start_from_trigger=True,  # scheduler -> triggerer: no worker, no GET before the wait
            poke_interval=30,
            timeout=6 * 3600,  # holds for every map index
        ).expand(allocation_id=IDS)  # a literal list of ids in the DAG file
    # [END howto_sensor_start_from_trigger_fleet]
    task = _serialized(dag).get_task("wait")
    assert task.start_trigger_args.timeout == datetime.timedelta(hours=6)
    triggers = [_started_trigger(task, index) for index in range(len(IDS))]
    assert [t.allocation_id for t in triggers] == IDS
    assert {t._checked_poll_interval() for t in triggers} == {30.0}
