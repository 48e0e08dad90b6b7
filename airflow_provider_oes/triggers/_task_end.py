"""``end_from_trigger``: when the trigger may end the sensor's task itself, and how it does it.

Only a success read and checked exactly as ``execute_complete`` reads it ends the task in the triggerer,
with its ``return_value`` XCom pushed first through the triggerer's supervisor (:func:`end_task`); everything
else, and every task whose success does more than push that XCom (:func:`worker_needed`), resumes on a
worker. Why, and why not ``TaskSuccessEvent(xcoms=...)``: ``docs/internals/task-end.rst``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

__all__ = ["cleared_record", "end_task", "end_task_with", "worker_needed"]


def worker_needed(task: Any) -> str | None:
    """Why ``task``'s success needs a worker (a short reason), or ``None`` when its trigger may end it.

    :param task: The sensor (on a worker) or its serialized form (in the triggerer, a task started from the
        triggerer); mapped or not.
    """
    if _setting(task, "outlets", None):
        return "it has outlets (Airflow registers their asset events only for a task that succeeds on a worker)"
    if not _setting(task, "do_xcom_push", True):
        return "do_xcom_push is False"
    if _setting(task, "multiple_outputs", False):
        return "multiple_outputs is set"
    if not getattr(task, "is_mapped", False) and _in_dag(task):
        try:
            expands_over_output = next(iter(task.iter_mapped_dependants()), None) is not None
        except Exception:
            return "its mapped downstream tasks could not be read"  # unknown: the worker path is always right
        if expands_over_output:
            return "a downstream task expands over its output (the map length is recorded on a worker)"
    return None


def _setting(task: Any, name: str, default: Any) -> Any:
    """An operator argument of ``task``; a serialized mapped task keeps those given to ``partial`` apart."""
    partial_kwargs = getattr(task, "partial_kwargs", None)
    if isinstance(partial_kwargs, dict) and name in partial_kwargs:
        return partial_kwargs[name]
    return getattr(task, name, default)


def _in_dag(task: Any) -> bool:
    """Whether ``task`` belongs to a DAG (the task SDK's ``dag`` property raises when it does not)."""
    try:
        return getattr(task, "dag", None) is not None and hasattr(task, "iter_mapped_dependants")
    except RuntimeError:
        return False


def cleared_record(payload: object, *, allocation_id: str, enterprise_id: str | None) -> dict[str, Any] | None:
    """What ``execute_complete`` would return for this payload if the allocation is ``cleared``, else ``None``.

    :param payload: The event payload the trigger would send the sensor
        (:mod:`airflow_provider_oes.triggers._events`).
    :param allocation_id: The allocation the sensor waits for.
    :param enterprise_id: The enterprise it was polled under.
    :return: The allocation's JSON record for a ``cleared`` allocation; ``None`` for anything else
        (``released``, an error, an event that does not check out), which the sensor handles on a worker.
    """
    from airflow_provider_oes.exceptions import OESError
    from airflow_provider_oes.triggers._events import read_event

    try:
        allocation = read_event(payload, allocation_id=allocation_id, enterprise_id=enterprise_id)
    except OESError:
        return None  # the worker raises the same error, where the sensor's rules (soft_fail, retries) apply
    return allocation.to_json_dict() if allocation.is_cleared else None


def end_task(
    payload: object, *, allocation_id: str, enterprise_id: str | None, task_instance: Any, log: Any
) -> TriggerEvent | None:
    """Push the ``return_value`` XCom and return the ``TaskSuccessEvent`` that ends the task; ``None``: resume
    on a worker (the allocation is not ``cleared``, or the XCom could not be pushed).

    :param payload: The event payload the trigger would send the sensor.
    :param allocation_id: The allocation the sensor waits for.
    :param enterprise_id: The enterprise it was polled under.
    :param task_instance: The trigger's task instance (``dag_id``, ``task_id``, ``run_id``, ``map_index``).
    :param log: Where to say why the task resumes on a worker after all.
    """
    record = cleared_record(payload, allocation_id=allocation_id, enterprise_id=enterprise_id)
    if record is None:
        return None
    return end_task_with(record, what=f"allocation {allocation_id} cleared", task_instance=task_instance, log=log)


def end_task_with(record: dict[str, Any], *, what: str, task_instance: Any, log: Any) -> TriggerEvent | None:
    """Push ``record`` as the ``return_value`` XCom and return the ``TaskSuccessEvent`` that ends the task;
    ``None``: the XCom could not be pushed (the task resumes on a worker, which pushes it).

    :param record: What ``execute_complete`` would return, already checked by the caller as a success.
    :param what: The success, as the log names it (``allocation ... cleared``).
    :param task_instance: The trigger's task instance (``dag_id``, ``task_id``, ``run_id``, ``map_index``).
    :param log: Where to say what happened.
    """
    started = time.monotonic()
    try:
        push_return_value(task_instance, record)
    except Exception as exc:
        # Nothing is lost: the worker pushes it, as without end_from_trigger.
        log.warning(
            "end_from_trigger: could not push the XCom (%s) from the triggerer (%s: %s); the task resumes on a worker",
            what,
            type(exc).__name__,
            str(exc)[:200],
        )
        return None
    log.info(
        "end_from_trigger: %s; its XCom is pushed (%.0f ms), the task ends here",
        what,
        (time.monotonic() - started) * 1000,
    )
    from airflow.triggers.base import TaskSuccessEvent

    return TaskSuccessEvent()


def push_return_value(task_instance: Any, value: dict[str, Any]) -> None:
    """Push ``value`` as the task instance's ``return_value`` XCom, as a worker does: the configured XCom
    backend serializes it and the triggerer's supervisor sends it to the execution API.

    :param task_instance: The trigger's task instance.
    :param value: The XCom value.
    :raises Exception: whatever stops the push (no task instance, no supervisor, the API's refusal).
    """
    from airflow.sdk.execution_time.xcom import XCom

    XCom.set(
        key="return_value",
        value=value,
        dag_id=task_instance.dag_id,
        task_id=task_instance.task_id,
        run_id=task_instance.run_id,
        map_index=task_instance.map_index,
    )
