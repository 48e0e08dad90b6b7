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

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_oes.models import Allocation

CLOCK_MARGIN = timedelta(hours=1)
"""How far Airflow's clock (asset event timestamps) may run behind BitGo's (``updatedAt``) in
:func:`new_allocations`' look-back."""

__all__ = [
    "ASSET_URI_SCHEME",
    "OUTLET_FIELDS",
    "allocations_asset_uri",
    "allocations_from_asset_event",
    "attach_allocation_to_outlets",
    "first_deliveries",
    "new_allocations",
    "outlet_extra",
]

ASSET_URI_SCHEME = "oes"
"""Scheme of the asset URIs this provider suggests: ``oes://<enterprise id>/allocations/<status>``."""

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
    from urllib.parse import quote

    from airflow_provider_oes._api import validate_enterprise_id

    enterprise_id = validate_enterprise_id(enterprise_id)
    if not isinstance(status, str) or not status.isidentifier():
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        raise OESInvalidRequestError(f"status must be a word like 'cleared', got {status!r}")
    return f"{ASSET_URI_SCHEME}://{quote(enterprise_id, safe='')}/allocations/{status}"


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
    extra = event if isinstance(event, Mapping) else getattr(event, "extra", None)
    if not isinstance(extra, Mapping):
        return []
    payload = extra.get("payload") if extra.get("from_trigger") else None
    if isinstance(payload, Mapping):
        allocations = payload.get("allocations")
        return [dict(a) for a in allocations if isinstance(a, Mapping)] if isinstance(allocations, list) else []
    single = extra.get("allocation")
    return [dict(single)] if isinstance(single, Mapping) else []


def _event_time(event: Any) -> datetime | None:
    stamp = getattr(event, "timestamp", None)
    return stamp if isinstance(stamp, datetime) else None


def first_deliveries(triggering_events: Iterable[Any], earlier_events: Iterable[Any]) -> list[dict[str, Any]]:
    """The allocations of a run's triggering events that no earlier asset event carried, each once.

    A watcher emits an allocation again when its triggerer dies in the second between Airflow storing the
    event and the trigger learning that it did (at least once rather than maybe never): the same allocation
    then reaches two asset events, and two DAG runs. Settling only the allocations whose *first* event is
    among the run's triggering events settles each exactly once, whichever runs first.

    :param triggering_events: The run's triggering events of one asset (``triggering_asset_events[asset]``).
    :param earlier_events: Events of the same asset stored before them; any event at or after the earliest
        triggering event's ``timestamp`` is ignored (so passing the run's own events is harmless).
    :returns: Allocations in the API's JSON shape, in the order of the triggering events.
    """
    triggering = sorted(triggering_events, key=lambda e: (_event_time(e) is None, _event_time(e) or datetime.min))
    stamps = [stamp for event in triggering if (stamp := _event_time(event)) is not None]
    first_at = min(stamps) if stamps else None
    seen: set[str] = set()
    if first_at is not None:
        for event in earlier_events:
            stamp = _event_time(event)
            if stamp is not None and stamp < first_at:
                seen.update(str(a.get("id", "")).lower() for a in allocations_from_asset_event(event))
    found: dict[str, dict[str, Any]] = {}
    for event in triggering:
        for allocation in allocations_from_asset_event(event):
            key = str(allocation.get("id", "")).lower()
            if key and key not in seen:
                found.setdefault(key, allocation)
    return list(found.values())


def new_allocations(asset: Any, triggering_asset_events: Any, inlet_events: Any) -> list[dict[str, Any]]:
    """The allocations this run must act on: those of its triggering events of ``asset`` seen for the first time.

    Use it in a task that lists ``asset`` in its ``inlets`` (Airflow serves ``inlet_events`` only for those),
    so that a watcher's rare repeat after a triggerer crash (see :func:`first_deliveries`) never settles an
    allocation twice::

        @task(inlets=[CLEARED])
        def cleared_allocations(triggering_asset_events=None, inlet_events=None):
            return new_allocations(CLEARED, triggering_asset_events, inlet_events)

    The earlier events are read from the allocations' ``updatedAt`` minus :data:`CLOCK_MARGIN` up to the
    run's first triggering event: an allocation cannot be in an event stored before it became final.

    :param asset: The asset the run was triggered by.
    :param triggering_asset_events: The task's ``triggering_asset_events``.
    :param inlet_events: The task's ``inlet_events``.
    """
    from airflow_provider_oes._time import parse_time

    triggering = list(triggering_asset_events[asset])
    stamps = [stamp for event in triggering if (stamp := _event_time(event)) is not None]
    updated = [
        parse_time(a["updatedAt"], "updatedAt")
        for event in triggering
        for a in allocations_from_asset_event(event)
        if a.get("updatedAt")
    ]
    if not stamps or not updated:
        return first_deliveries(triggering, [])
    earlier = inlet_events[asset].after((min(updated) - CLOCK_MARGIN).isoformat()).before(min(stamps).isoformat())
    return first_deliveries(triggering, earlier)
