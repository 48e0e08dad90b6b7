"""Reading a consuming run's asset events (``new_allocations``, ``new_settlements``): what each event carries,
and the asset's earlier events a page at a time (the look-back stays bounded)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._acks import DeliveryKey, delivery_key

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Iterator


@dataclass(frozen=True)
class RecordKind:
    """What an asset event carries, and what a consumer may act on: allocations or settlements.

    :param noun: The record's name in log lines (``allocation``).
    :param payload_key: The list of records in a watcher's event payload (``allocations``); also the middle
        segment of the suggested asset URI.
    :param outlet_key: The single record a task's outlet event carries (``allocation``), or ``None``.
    :param statuses: The statuses a consumer may act on (the default): the final ones for allocations.
    :param status_words: How an error names them (``final statuses``).
    :param log: The public module's logger, so log lines name it.
    """

    noun: str
    payload_key: str
    outlet_key: str | None
    statuses: tuple[str, ...]
    status_words: str
    log: logging.Logger


def carried(event: Any, kind: RecordKind) -> Iterator[Mapping[str, Any]]:
    """The records of ``kind`` an event carries, as stored (not copied: read them, do not keep them)."""
    extra = event if isinstance(event, Mapping) else getattr(event, "extra", None)
    if not isinstance(extra, Mapping):
        return
    payload = extra.get("payload") if extra.get("from_trigger") else None
    if isinstance(payload, Mapping):
        records = payload.get(kind.payload_key)
        if isinstance(records, list):
            yield from (r for r in records if isinstance(r, Mapping))
        return
    single = extra.get(kind.outlet_key) if kind.outlet_key else None
    if isinstance(single, Mapping):
        yield single


def event_time(event: Any) -> datetime | None:
    stamp = getattr(event, "timestamp", None)
    return stamp if isinstance(stamp, datetime) else None


def by_time(events: Iterable[Any]) -> list[Any]:
    return sorted(events, key=lambda e: (event_time(e) is None, event_time(e) or datetime.min))


def drop_carried(found: dict[DeliveryKey, Any], events: Iterable[Any], kind: RecordKind, *, before: datetime) -> None:
    """Remove from ``found`` every key an event stored before ``before`` carried (keeps nothing else)."""
    ids = {key.id for key in found}
    for event in events:
        if not found:
            return
        stamp = event_time(event)
        if stamp is None or stamp >= before:
            continue
        for record in carried(event, kind):
            record_id = record.get("id")
            # The id first: building the whole key (parsing updatedAt) only for ids the run carries keeps a
            # long look-back cheap.
            if isinstance(record_id, str) and record_id.lower() in ids:
                key = delivery_key(record)
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
