"""Acknowledged delivery: what identifies one final allocation, and the state-store keys that record acting on it.

Both sides build keys here so they cannot disagree: the consumer (``assets.new_allocations(acknowledge=True)``)
writes them, the watcher reads them and deletes them after :data:`ACK_RETENTION`. Nothing here imports Airflow.
Design: ``docs/event-driven-acknowledgements.rst``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

__all__ = [
    "ACK_KEY_PREFIX",
    "ACK_RETENTION",
    "Acknowledgement",
    "DeliveryKey",
    "ack_key",
    "ack_value",
    "delivery_key",
    "read_ack",
]

ACK_KEY_PREFIX = "oes-ack/"
"""Every acknowledgement key starts with it: ``oes-ack/<consumer>/<id>/<status>/<updatedAt>``."""

ACK_RETENTION = timedelta(days=3)
"""How long the watcher keeps an acknowledgement after reading it before deleting it: it must outlive any
later repeat of the allocation (a stranded asset event consumed late, a re-emission racing the ack)."""

_MAX_KEY = 512
"""Airflow 3.3's ``asset_state_store.key`` column is ``String(512)``."""


class DeliveryKey(NamedTuple):
    """What makes two records the same delivery: the allocation, the status it reached, and when.

    A later real change of the same allocation (another ``updatedAt`` or status) is a new delivery.
    """

    id: str
    status: str
    updated_at: str


class Acknowledgement(NamedTuple):
    """A stored acknowledgement: the run that took the allocation on, and when."""

    run_id: str
    acked_at: datetime


def delivery_key(record: Any) -> DeliveryKey | None:
    """The :class:`DeliveryKey` of an allocation record (the API's JSON shape), or ``None`` if it lacks one.

    The id is compared case-insensitively (the API's ids are UUIDs); ``updatedAt`` is normalised to UTC so
    ``...Z`` and ``...+00:00`` spellings match. A record without ``updatedAt`` (a task's outlet summary) gets
    ``""``: it matches only records that also lack it.

    :param record: One allocation as an asset event carries it.
    """
    from airflow_provider_oes._time import parse_time

    if not isinstance(record, Mapping):
        return None
    allocation_id, status = record.get("id"), record.get("status")
    if not isinstance(allocation_id, str) or not allocation_id or not isinstance(status, str) or not status:
        return None
    updated = record.get("updatedAt")
    try:
        stamp = parse_time(updated, "updatedAt").isoformat() if updated else ""
    except Exception:  # a malformed stamp is still a key: only an identical record matches it
        stamp = str(updated)
    return DeliveryKey(allocation_id.lower(), status.lower(), stamp)


def ack_key(consumer: str, key: DeliveryKey) -> str:
    """The state store key under which ``consumer`` acknowledges the delivery ``key``.

    :param consumer: Who acted: the consuming DAG's id (each DAG on the asset acknowledges for itself).
    :param key: The delivery.
    :raises ValueError: if the key would not fit Airflow's 512-character key column.
    """
    text = f"{ACK_KEY_PREFIX}{consumer}/{key.id}/{key.status}/{key.updated_at}"
    if not consumer or len(text) > _MAX_KEY:
        raise ValueError(f"cannot build an acknowledgement key for consumer {consumer!r} and {key!r}")
    return text


def ack_value(run_id: str, now: datetime | None = None) -> dict[str, str]:
    """The value stored under an :func:`ack_key`.

    :param run_id: The DAG run that took the allocation on.
    :param now: When (default: now, UTC).
    """
    at = now if now is not None else datetime.now(timezone.utc)
    return {"run_id": run_id, "acked_at": at.astimezone(timezone.utc).isoformat()}


def read_ack(value: Any) -> Acknowledgement | None:
    """Read a stored acknowledgement; ``None`` for a missing or foreign value.

    :param value: What ``asset_state_store.get(ack_key(...))`` returned.
    """
    if not isinstance(value, dict):
        return None
    run_id, at = value.get("run_id"), value.get("acked_at")
    if not isinstance(run_id, str) or not isinstance(at, str):
        return None
    try:
        acked_at = datetime.fromisoformat(at)
    except ValueError:
        return None
    return Acknowledgement(run_id, acked_at)
