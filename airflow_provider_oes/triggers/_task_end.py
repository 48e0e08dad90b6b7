"""``end_from_trigger``: when the trigger may end the sensor's task itself, and the event that does it.

Airflow ends a task in the triggerer when its trigger yields a ``TaskSuccessEvent``: the task instance is
marked ``success`` and the event's XComs are pushed, with no worker (``airflow/models/trigger.py``). That
path runs none of the task's own code, so the trigger takes it only when nothing the sensor does on a worker
is lost:

* only a ``cleared`` allocation, read and checked exactly as ``execute_complete`` reads it, ends the task;
  its ``return_value`` XCom is what ``execute_complete`` returns (the API's JSON record);
* everything else resumes on a worker, which applies the sensor's rules as before: ``released`` (fails
  without retries with BitGo's reason, or skips under ``soft_fail``: a ``TaskFailedEvent`` goes through
  retries since Airflow 3.3.1 and sends no reason), a permanent API error, a malformed event;
* and a task whose success does more than push that XCom always resumes on a worker
  (:func:`worker_needed`): outlets (Airflow registers no asset event for a task its trigger ended,
  apache/airflow#49347), ``do_xcom_push=False``, ``multiple_outputs``, a downstream ``expand`` over the
  sensor's output (the map length is recorded only by a worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

__all__ = ["TASK_END_PAYLOAD", "task_end_event", "worker_needed"]

TASK_END_PAYLOAD = "success"
"""The payload of the ``TaskSuccessEvent`` (its state): what ``dag.test()`` resumes the task with, the one
place a task its trigger ended still resumes (it runs triggers in process and drops the event's XComs)."""


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


def task_end_event(payload: object, *, allocation_id: str, enterprise_id: str | None) -> TriggerEvent | None:
    """The event that ends the task in the triggerer for this payload, or ``None``: resume on a worker.

    :param payload: The event payload the trigger would send the sensor
        (:mod:`airflow_provider_oes.triggers._events`).
    :param allocation_id: The allocation the sensor waits for.
    :param enterprise_id: The enterprise it was polled under.
    :return: ``TaskSuccessEvent(xcoms={"return_value": <the allocation's JSON record>})`` for an allocation
        that is ``cleared``; ``None`` for anything else (``released``, an error, an event that does not check
        out), which the sensor handles on a worker exactly as before.
    """
    from airflow_provider_oes.exceptions import OESError
    from airflow_provider_oes.triggers._events import read_event

    try:
        allocation = read_event(payload, allocation_id=allocation_id, enterprise_id=enterprise_id)
    except OESError:
        return None  # the worker raises the same error, where the sensor's rules (soft_fail, retries) apply
    if not allocation.is_cleared:
        return None
    from airflow.triggers.base import TaskSuccessEvent

    return TaskSuccessEvent(xcoms={"return_value": allocation.to_json_dict()})
