"""What a watcher watches: the small description that makes the watch loop resource-generic.

A watched record has ``id``, ``status``, ``updated_at`` and ``to_json_dict()``; the description says how to
parse one, which are emitted, the key one delivery is remembered by, the payload's field and the change source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_oes._api import parse_allocation_record
from airflow_provider_oes.models import ALLOCATIONS_PAYLOAD_KEY

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime


class WatchedRecord(Protocol):
    """What the watch loop reads of a record (an allocation, a settlement)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> Any: ...

    @property
    def updated_at(self) -> datetime: ...

    def to_json_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WatchedResource:
    """How the watch loop handles one kind of record.

    :param noun: Its name in log lines (``allocation``).
    :param payload_key: The event payload's list of records (``allocations``).
    :param parse: ``parse(record, record_id, enterprise_id)``: the validated record (raises when invalid).
    :param wanted: ``wanted(query, record)``: whether the watcher emits it.
    :param key: The record's delivery key in the window (compared lower-cased): the allocation id, since an
        allocation becomes final once; ``id/status/updatedAt`` for records that change after they are emitted.
    :param cap_attribute: The trigger's attribute with the most records per event.
    :param open_subscription: Opens the change source's subscription for a watcher (``None``: the allocation
        change feed).
    """

    noun: str
    payload_key: str
    parse: Callable[[Any, str, str], WatchedRecord]
    wanted: Callable[[Any, Any], bool]
    key: Callable[[Any], str]
    cap_attribute: str
    open_subscription: Callable[..., Any] | None = None


def _parse_allocation(record: Any, record_id: str, enterprise_id: str) -> WatchedRecord:
    return parse_allocation_record(record, allocation_id=record_id, enterprise_id=enterprise_id)


def _final_and_matching(query: Any, allocation: Any) -> bool:
    return bool(allocation.is_terminal and query.matches(allocation))


ALLOCATIONS = WatchedResource(
    noun="allocation",
    payload_key=ALLOCATIONS_PAYLOAD_KEY,
    parse=_parse_allocation,
    wanted=_final_and_matching,
    key=lambda allocation: str(allocation.id),
    cap_attribute="max_allocations_per_event",
)
"""Allocations that became final (``AllocationEventTrigger``), read from the enterprise's change feed."""


def resource_of(trigger: Any) -> WatchedResource:
    """The trigger's ``resource``, or :data:`ALLOCATIONS` for a trigger that names none."""
    resource = getattr(trigger, "resource", None)
    return resource if isinstance(resource, WatchedResource) else ALLOCATIONS
