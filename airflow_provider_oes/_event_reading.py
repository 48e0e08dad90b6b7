"""Reading a consuming run's asset events for :func:`~airflow_provider_oes.assets.new_allocations`: what each
event carries, and the asset's earlier events a page at a time (the look-back stays bounded)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._acks import DeliveryKey, delivery_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


def carried(event: Any) -> Iterator[Mapping[str, Any]]:
    """The allocation records an event carries, as stored (not copied: read them, do not keep them)."""
    extra = event if isinstance(event, Mapping) else getattr(event, "extra", None)
    if not isinstance(extra, Mapping):
        return
    payload = extra.get("payload") if extra.get("from_trigger") else None
    if isinstance(payload, Mapping):
        allocations = payload.get("allocations")
        if isinstance(allocations, list):
            yield from (a for a in allocations if isinstance(a, Mapping))
        return
    single = extra.get("allocation")
    if isinstance(single, Mapping):
        yield single


def event_time(event: Any) -> datetime | None:
    stamp = getattr(event, "timestamp", None)
    return stamp if isinstance(stamp, datetime) else None


def by_time(events: Iterable[Any]) -> list[Any]:
    return sorted(events, key=lambda e: (event_time(e) is None, event_time(e) or datetime.min))


def drop_carried(found: dict[DeliveryKey, Any], events: Iterable[Any], *, before: datetime) -> None:
    """Remove from ``found`` every key an event stored before ``before`` carried (keeps nothing else)."""
    ids = {key.id for key in found}
    for event in events:
        if not found:
            return
        stamp = event_time(event)
        if stamp is None or stamp >= before:
            continue
        for allocation in carried(event):
            allocation_id = allocation.get("id")
            # The id first: building the whole key (parsing updatedAt) only for ids the run carries keeps a
            # long look-back cheap.
            if isinstance(allocation_id, str) and allocation_id.lower() in ids:
                key = delivery_key(allocation)
                if key is not None:
                    found.pop(key, None)


def paged_events(inlet_events: Any, asset: Any, after: datetime, before: datetime, page_size: int) -> Iterator[Any]:
    """The asset's events from ``after`` to ``before`` (both inclusive, as Airflow's bounds), oldest first, a
    page at a time: the task holds one page of events (with their extras) at once, never the whole window.

    Airflow orders by timestamp alone and its ``after`` is inclusive, so each page starts at the previous
    page's last timestamp and skips the events already yielded there; a page made only of that timestamp
    doubles the page size until it gets past it.
    """
    low, limit = after, page_size
    yielded_at_low: set[Any] = set()
    while True:
        page = list(inlet_events[asset].after(low.isoformat()).before(before.isoformat()).ascending(True).limit(limit))
        last = low
        for event in page:
            stamp = event_time(event) or low
            identity = getattr(event, "id", None)
            if stamp == low and identity in yielded_at_low:
                continue
            if stamp > last:
                last, yielded_at_low = stamp, set()
            yielded_at_low.add(identity)
            yield event
        if len(page) < limit:
            return
        if last == low:
            limit *= 2
        else:
            low, limit = last, page_size


def parsed_time(value: str) -> datetime | None:
    from airflow_provider_oes._time import parse_time
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    if not value:
        return None
    try:
        return parse_time(value, "updatedAt")
    except OESInvalidRequestError:
        return None


def started_run_of(event: Any, dag_id: str, *, other_than: str) -> bool:
    """Whether ``event`` started (was consumed by) a run of ``dag_id`` other than ``other_than``."""
    for run in getattr(event, "created_dagruns", None) or ():
        if getattr(run, "dag_id", None) == dag_id and getattr(run, "run_id", None) != other_than:
            return True
    return False
