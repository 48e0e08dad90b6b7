"""The consumer side of OES asset events, one set of rules for allocations and settlements: the asset URI
convention, which records of a run's triggering events it acts on, and its acknowledgements.

The public faces are :mod:`airflow_provider_oes.assets` (allocations) and
:mod:`airflow_provider_oes.settlement_assets` (settlements); each names its :class:`RecordKind`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._acks import DeliveryKey, ack_key, ack_value, delivery_key, read_ack
from airflow_provider_oes._event_reading import (
    RecordKind,
    by_time,
    carried,
    drop_carried,
    event_time,
    paged_events,
    parsed_time,
    started_run_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "ASSET_URI_SCHEME",
    "CLOCK_MARGIN",
    "DEFAULT_PAGE_SIZE",
    "RACE_WINDOW",
    "asset_uri",
    "first_records",
    "new_records",
    "records_from_asset_event",
    "wanted_statuses",
]

ASSET_URI_SCHEME = "oes"
"""Scheme of the asset URIs this provider suggests: ``oes://<enterprise id>/<records>/<status>``."""

CLOCK_MARGIN = timedelta(hours=1)
"""How far Airflow's clock (asset event timestamps) may run behind BitGo's (``updatedAt``) in the look-back of
``new_allocations`` / ``new_settlements`` without acknowledgements."""

DEFAULT_PAGE_SIZE = 500
"""How many asset events ``new_allocations`` / ``new_settlements`` read per request."""

RACE_WINDOW = timedelta(hours=1)
"""With acknowledgements, how far before a run's first triggering event ``new_allocations`` /
``new_settlements`` look for an event of the same record taken by another run of the DAG that has not
acknowledged it yet."""


def asset_uri(kind: RecordKind, enterprise_id: str, status: str) -> str:
    """``oes://<enterprise id>/<kind.payload_key>/<status>``; the enterprise id validated, the status a word.

    :param kind: What the asset carries (its ``payload_key`` is the URI's middle segment).
    :param enterprise_id: The client's enterprise id (validated like every id sent to the API).
    :param status: The last path segment: a word such as ``cleared`` or ``pending``.
    """
    from urllib.parse import quote

    from airflow_provider_oes._api import validate_enterprise_id

    enterprise_id = validate_enterprise_id(enterprise_id)
    if not isinstance(status, str) or not status.isidentifier():
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        raise OESInvalidRequestError(f"status must be a word like {kind.statuses[0]!r}, got {status!r}")
    return f"{ASSET_URI_SCHEME}://{quote(enterprise_id, safe='')}/{kind.payload_key}/{status}"


def records_from_asset_event(kind: RecordKind, event: Any) -> list[dict[str, Any]]:
    """The records of ``kind`` an asset event (or its ``extra``) carries, copied; ``[]`` for none."""
    return [dict(record) for record in carried(event, kind)]


def wanted_statuses(kind: RecordKind, statuses: Iterable[str] | None) -> frozenset[str]:
    """The statuses a consumer acts on: ``kind.statuses`` by default, else a non-empty subset of them."""
    allowed = frozenset(kind.statuses)
    if statuses is None:
        return allowed
    if isinstance(statuses, str):
        statuses = [statuses]
    wanted = frozenset(str(s.value if hasattr(s, "value") else s).lower() for s in statuses)
    if not wanted or not wanted <= allowed:
        raise ValueError(f"statuses must be {kind.status_words} among {sorted(allowed)}, got {sorted(wanted)!r}")
    return wanted


def _candidates(kind: RecordKind, triggering: list[Any], statuses: frozenset[str]) -> dict[DeliveryKey, dict[str, Any]]:
    """The run's deliveries, each once, in the order of its events; records not in ``statuses`` are skipped.

    Another producer on the same asset (a task's outlet attaching a ``reserved`` allocation) must neither fail
    the run nor stand for a delivery: such records are logged and left out.
    """
    found: dict[DeliveryKey, dict[str, Any]] = {}
    skipped: list[str] = []
    for event in triggering:
        for record in records_from_asset_event(kind, event):
            key = delivery_key(record)
            if key is None or key.status not in statuses:
                skipped.append(f"{record.get('id')!s}:{record.get('status')!s}")
                continue
            found.setdefault(key, record)
    if skipped:
        kind.log.warning(
            "Left out %d %s record(s) whose status is not one of %s: %s",
            len(skipped),
            kind.noun,
            sorted(statuses),
            ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
        )
    return found


def first_records(
    kind: RecordKind, triggering_events: Iterable[Any], earlier_events: Iterable[Any], statuses: Iterable[str] | None
) -> list[dict[str, Any]]:
    """The records of a run's triggering events that no earlier event carried (``first_deliveries``)."""
    triggering = by_time(triggering_events)
    found = _candidates(kind, triggering, wanted_statuses(kind, statuses))
    stamps = [stamp for event in triggering if (stamp := event_time(event)) is not None]
    if stamps:
        drop_carried(found, earlier_events, kind, before=min(stamps))
    return list(found.values())


def new_records(
    kind: RecordKind,
    asset: Any,
    triggering_asset_events: Any,
    inlet_events: Any,
    *,
    statuses: Iterable[str] | None,
    acknowledge: bool,
    context: Mapping[str, Any] | None,
    page_size: int,
) -> list[dict[str, Any]]:
    """The records this run must act on, each once (``new_allocations`` / ``new_settlements``: the rules are
    documented there and in ``docs/event-driven-acknowledgements.rst``)."""
    if page_size < 1:
        raise ValueError(f"page_size must be a positive number of events, got {page_size!r}")
    triggering = by_time(triggering_asset_events[asset])
    found = _candidates(kind, triggering, wanted_statuses(kind, statuses))
    stamps = [stamp for event in triggering if (stamp := event_time(event)) is not None]
    if not found:
        return []
    store, dag_id, run_id = _ack_target(kind, asset, context) if acknowledge else (None, None, None)
    if store is None or dag_id is None or run_id is None:
        updated = [stamp for key in found if (stamp := parsed_time(key.updated_at)) is not None]
        if stamps and updated:
            first_at = min(stamps)
            events = paged_events(inlet_events, asset, min(updated) - CLOCK_MARGIN, first_at, page_size)
            drop_carried(found, events, kind, before=first_at)
        return list(found.values())

    own: set[DeliveryKey] = set()
    for key in list(found):
        ack = read_ack(store.get(ack_key(dag_id, key)))
        if ack is None:
            continue
        if ack.run_id == run_id:
            own.add(key)
        else:
            del found[key]
    undecided = {key: found[key] for key in found if key not in own}
    if stamps and undecided:
        first_at = min(stamps)
        events = paged_events(inlet_events, asset, first_at - RACE_WINDOW, first_at, page_size)
        started_other = (e for e in events if started_run_of(e, dag_id, other_than=run_id))
        drop_carried(undecided, started_other, kind, before=first_at)
    kept = {key: record for key, record in found.items() if key in own or key in undecided}
    value = ack_value(run_id)
    for key in kept:
        if key not in own:
            store.set(ack_key(dag_id, key), value)
    return list(kept.values())


def _ack_target(kind: RecordKind, asset: Any, context: Mapping[str, Any] | None) -> tuple[Any, str | None, str | None]:
    """The asset's state store accessor, the DAG id and the run id; ``(None, ...)`` where Airflow has none."""
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    stores = context.get("asset_state_store")
    dag_run = context.get("dag_run")
    if stores is None or dag_run is None:
        kind.log.warning(
            "acknowledge=True, but this task has no asset_state_store (Airflow before 3.3, or %r is not among "
            "its inlets): falling back to matching repeats against earlier events, without acknowledgements",
            getattr(asset, "name", asset),
        )
        return None, None, None
    return stores[asset], str(dag_run.dag_id), str(dag_run.run_id)
