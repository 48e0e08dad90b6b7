"""Allocations as Airflow asset events: the asset URI convention and the one shape of an event's ``extra``.

Two producers put allocations on assets, and downstream DAGs read both the same way:

* tasks: :class:`~airflow_provider_oes.sensors.allocation.AllocationStatusSensor` and
  :class:`~airflow_provider_oes.operators.allocation.GetAllocationOperator` given ``outlets=[...]`` attach
  ``{"allocation": {...}, "enterprise_id": ..., "oes_conn_id": ...}`` (:func:`outlet_extra`) to each outlet's
  asset event;
* the triggerer: :class:`~airflow_provider_oes.triggers.event.AllocationEventTrigger` watching an asset emits
  events whose payload is ``{"allocations": [...], "enterprise_id": ..., ...}``; Airflow stores it as
  ``extra={"from_trigger": True, "payload": <payload>}``.

:func:`allocations_from_asset_event` reads either shape, so a settlement DAG does not care which one started
it::

    @task
    def settle(triggering_asset_events=None):
        for event in triggering_asset_events[CLEARED]:
            for allocation in allocations_from_asset_event(event):
                ...

Nothing here imports Airflow at module import time (DAG files import it at parse time).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._acks import DeliveryKey
from airflow_provider_oes._consuming import (
    ASSET_URI_SCHEME,
    CLOCK_MARGIN,
    DEFAULT_PAGE_SIZE,
    RACE_WINDOW,
    asset_uri,
    first_records,
    new_records,
    records_from_asset_event,
)
from airflow_provider_oes._event_reading import RecordKind
from airflow_provider_oes.models import ALLOCATIONS_PAYLOAD_KEY, FINAL_STATUS_VALUES

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow_provider_oes.models import Allocation

ALLOCATIONS = RecordKind(
    noun="allocation",
    payload_key=ALLOCATIONS_PAYLOAD_KEY,
    outlet_key="allocation",
    statuses=FINAL_STATUS_VALUES,
    status_words="final statuses",
    log=logging.getLogger(__name__),
)
"""Allocations on asset events: a watcher's ``payload["allocations"]`` or a task's ``extra["allocation"]``;
a consumer acts on final ones only."""

__all__ = [
    "ASSET_URI_SCHEME",
    "CLOCK_MARGIN",
    "DEFAULT_PAGE_SIZE",
    "OUTLET_FIELDS",
    "RACE_WINDOW",
    "DeliveryKey",
    "allocations_asset_uri",
    "allocations_from_asset_event",
    "attach_allocation_to_outlets",
    "first_deliveries",
    "new_allocations",
    "outlet_extra",
]

OUTLET_FIELDS = ("id", "type", "status", "amount", "connectionId", "reason")
"""The allocation fields (API names) a task puts on its outlets' asset events: enough to act on, small
enough for the metadata DB. The trigger's events carry the whole record instead."""


def allocations_asset_uri(enterprise_id: str, status: str = "cleared") -> str:
    """The suggested asset URI for allocations of an enterprise reaching ``status``.

    ``oes://<enterprise id>/allocations/<status>``, e.g. ``oes://5f1c.../allocations/cleared``. One asset per
    status keeps a settlement DAG (``cleared``) and an alerting DAG (``released``) apart. Any word works as
    the last segment (``final`` for a watcher of both statuses, ``gated`` for a sensor's outlet...): define
    each URI once, with one watcher, so two DAG files never describe the same asset differently.

    :param enterprise_id: The client's enterprise id (validated like every id sent to the API).
    :param status: The last path segment: a word such as ``cleared`` or ``released``.
    """
    return asset_uri(ALLOCATIONS, enterprise_id, status)


def outlet_extra(allocation: Allocation, *, enterprise_id: str | None, oes_conn_id: str) -> dict[str, Any]:
    """The ``extra`` a task attaches to its outlets' asset events for one allocation.

    :param allocation: The allocation the task saw.
    :param enterprise_id: The enterprise it belongs to (as the task resolved it).
    :param oes_conn_id: The Airflow connection the task read it through.
    """
    record = allocation.to_json_dict()
    summary = {name: record.get(name) for name in OUTLET_FIELDS}
    return {"allocation": summary, "enterprise_id": enterprise_id, "oes_conn_id": oes_conn_id}


def attach_allocation_to_outlets(
    task: Any, context: Mapping[str, Any], allocation: Allocation, *, enterprise_id: str | None, oes_conn_id: str
) -> int:
    """Put :func:`outlet_extra` on the asset event of each of ``task``'s outlets; return how many got it.

    Airflow registers outlet events only when the task succeeds, so this is called on success only. Asset
    aliases are skipped (an alias event needs a concrete asset, which the DAG author names). A context
    without ``outlet_events`` (``sensor.poke({})`` outside a task run) attaches nothing.

    :param task: The operator (its ``outlets``).
    :param context: The task's context.
    :param allocation: The allocation to attach.
    :param enterprise_id: Its enterprise id.
    :param oes_conn_id: The connection id.
    """
    outlets = list(getattr(task, "outlets", None) or [])
    outlet_events = context.get("outlet_events") if outlets else None
    if outlet_events is None:
        return 0
    from airflow.sdk import AssetAlias

    extra = outlet_extra(allocation, enterprise_id=enterprise_id, oes_conn_id=oes_conn_id)
    attached = 0
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            continue
        # update, not replace: keys the DAG author set on the same event survive.
        outlet_events[outlet].extra.update(extra)
        attached += 1
    return attached


def allocations_from_asset_event(event: Any) -> list[dict[str, Any]]:
    """The allocations an asset event carries, from either producer, in the API's JSON shape.

    :param event: An asset event as a downstream task sees it (``triggering_asset_events[asset][i]`` or
        ``inlet_events``), or its ``extra`` dict.
    :returns: ``[]`` when the event carries no allocation (e.g. it came from elsewhere).
    """
    return records_from_asset_event(ALLOCATIONS, event)


def first_deliveries(
    triggering_events: Iterable[Any], earlier_events: Iterable[Any], *, statuses: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The final allocations of a run's triggering events that no earlier asset event carried, each once.

    A watcher emits an allocation again when its triggerer dies in the second between Airflow storing the
    event and the trigger learning that it did (at least once rather than maybe never): the same allocation
    then reaches two asset events, and two DAG runs. Settling only the allocations whose *first* event is
    among the run's triggering events settles each exactly once, whichever runs first.

    A repeat is the same allocation with the same ``status`` and ``updatedAt`` (a :class:`DeliveryKey`): a
    later real change of that id is a new delivery. Records whose status is not final (or not in
    ``statuses``) are left out and never count as an earlier delivery.

    :param triggering_events: The run's triggering events of one asset (``triggering_asset_events[asset]``).
    :param earlier_events: Events of the same asset stored before them; any event at or after the earliest
        triggering event's ``timestamp`` is ignored (so passing the run's own events is harmless). Read once,
        keeping only the keys the run carries (it may be a long iterator).
    :param statuses: The statuses to act on (default: every final status).
    :returns: Allocations in the API's JSON shape, in the order of the triggering events.
    """
    return first_records(ALLOCATIONS, triggering_events, earlier_events, statuses)


def new_allocations(
    asset: Any,
    triggering_asset_events: Any,
    inlet_events: Any,
    *,
    statuses: Iterable[str] | None = None,
    acknowledge: bool = False,
    context: Mapping[str, Any] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[dict[str, Any]]:
    """The allocations this run must act on: the final ones of its triggering events of ``asset`` that no other
    run took on, each once.

    Use it in a task that lists ``asset`` in its ``inlets`` (Airflow serves ``inlet_events`` and
    ``asset_state_store`` only for those)::

        @task(inlets=[CLEARED])
        def cleared_allocations(triggering_asset_events=None, inlet_events=None):
            return new_allocations(CLEARED, triggering_asset_events, inlet_events, statuses=["cleared"],
                                   acknowledge=True)

    Repeats are matched on (id, status, ``updatedAt``) (:class:`DeliveryKey`); records of other statuses
    (e.g. a ``reserved`` allocation another producer attached to the asset) are logged and left out.

    Without ``acknowledge`` a delivery is a repeat when an earlier event of the asset carried it: the earlier
    events are read from the allocations' ``updatedAt`` minus :data:`CLOCK_MARGIN` up to the run's first
    triggering event, ``page_size`` events at a time, keeping only the keys the run carries.

    With ``acknowledge`` (Airflow 3.3+: tasks reach the asset's state store) the run records, under one
    :func:`~airflow_provider_oes._acks.ack_key` per allocation (consumer: the DAG id), each allocation it
    returns, so that a watcher can re-emit what no run took on (see ``docs/event-driven-acknowledgements.rst``).
    A delivery is then a repeat when another run of the DAG acknowledged it, or (for two runs racing before
    either acknowledged) when an event stored up to :data:`RACE_WINDOW` before this run's first one carried it
    and started another run of the DAG. An event that started no run (stranded, or stored after a watcher was
    unlinked) does not make a re-emission a repeat. A cleared and re-run run gets the same allocations again
    (its own acknowledgements). On Airflow 3.2, where tasks have no ``asset_state_store``, it warns and falls
    back to the check without acknowledgements.

    :param asset: The asset the run was triggered by.
    :param triggering_asset_events: The task's ``triggering_asset_events``.
    :param inlet_events: The task's ``inlet_events``.
    :param statuses: The statuses to act on (default: every final status, ``cleared`` and ``released``).
    :param acknowledge: Record what the run takes on in the asset's state store, and drop what another run
        acknowledged.
    :param context: The task's context (default: the running task's, from ``get_current_context()``); read
        only with ``acknowledge``: ``dag_run``, ``asset_state_store``.
    :param page_size: Asset events read per request.
    """
    return new_records(
        ALLOCATIONS,
        asset,
        triggering_asset_events,
        inlet_events,
        statuses=statuses,
        acknowledge=acknowledge,
        context=context,
        page_size=page_size,
    )
