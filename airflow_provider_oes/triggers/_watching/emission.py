"""What a watcher emits (rows parsed, the event's payload) and how it tells a failing feed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._retry import is_transient
from airflow_provider_oes._time import format_time, from_epoch
from airflow_provider_oes.triggers._watching.resource import resource_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow_provider_oes.triggers._feed import FeedRow
    from airflow_provider_oes.triggers._watching.resource import WatchedRecord
    from airflow_provider_oes.triggers._watching.subscribe import WatchedTrigger

log = logging.getLogger("airflow_provider_oes.triggers.event")

DEFAULT_MAX_PER_EVENT = 500
"""Allocations per event by default: about 250 KB of payload (an allocation is about 500 bytes of JSON)."""


def max_per_event(trigger: WatchedTrigger) -> int:
    """The cap on allocations per event: the trigger's, or the default; never above ``[core] max_map_length``
    (a consumer that maps a task over the event's allocations would fail above it)."""
    attribute = resource_of(trigger).cap_attribute
    cap = getattr(trigger, attribute, None) or DEFAULT_MAX_PER_EVENT
    try:
        from airflow.configuration import conf

        limit = conf.getint("core", "max_map_length", fallback=1024)
    except Exception:  # pragma: no cover - no Airflow configuration at all
        limit = 1024
    if cap > limit:
        log.warning("%s=%d is above [core] max_map_length (%d): using %d per event.", attribute, cap, limit, limit)
    return max(1, min(cap, limit))


def parse_rows(who: object, rows: Iterable[FeedRow], enterprise_id: str, trigger: object = None) -> list[Any]:
    """The rows as records of the trigger's resource (allocations by default); an invalid record is logged
    (naming it) and left out."""
    resource = resource_of(trigger)
    records = []
    for row in rows:
        try:
            records.append(resource.parse(row.record, row.id, enterprise_id))
        except Exception as exc:
            log.error("%r: skipping %s %s: its record is invalid: %s", who, resource.noun, row.id, exc)
    return records


def event_payload(
    trigger: WatchedTrigger, records: Sequence[WatchedRecord], polled_at: float | None, enterprise_id: str
) -> dict[str, Any]:
    """The payload of one event (what Airflow stores in the asset event's ``extra["payload"]``)."""
    return {
        "enterprise_id": enterprise_id,
        "oes_conn_id": trigger.oes_conn_id,
        "statuses": list(trigger.statuses or ()),
        "polled_at": None if polled_at is None else format_time(from_epoch(polled_at)),
        resource_of(trigger).payload_key: [r.to_json_dict() for r in records],
    }


def log_feed_error(who: object, error: BaseException, logged: str | None) -> str:
    """Log a failed poll (a transient one once per kind in a row, a refusal every time); return its text."""
    text = f"{type(error).__name__}: {error}"
    if is_transient(error):
        if text != logged:
            log.warning("%r: the change feed could not poll this time; it keeps trying: %s", who, text)
    else:
        # Loud every time (the feed retries these slowly): nothing is emitted until it is fixed.
        log.error(
            "%r: the OES API refuses the change feed (%s). No %s events until this is fixed; "
            "the trigger keeps retrying slowly instead of ending.",
            who,
            text,
            resource_of(getattr(who, "trigger", None)).noun,
        )
    return text
