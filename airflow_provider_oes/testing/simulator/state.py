"""
The simulator's state: allocations with their scripted timelines, memberships, faults and served requests.

A timeline: an allocation is ``reserved`` until ``reserved_for_seconds`` have passed since it was added
and it has been read ``reserved_for_reads`` times; it then shows its final status, with ``updatedAt``
the moment of the flip. An explicit :meth:`OESSimulator.set_status` overrides the timeline.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_RELEASED_REASON,
    UNLICENSED_ENTERPRISE_ID,
    _iso,
    _now,
)
from airflow_provider_oes.testing.simulator.faults import _FaultQueue

#: (status, reason, updatedAt) of an allocation as one read sees it.
_Snapshot = tuple[str, "str | None", datetime]


@dataclass
class _Allocation:
    id: str
    enterprise_id: str
    final_status: str
    reserved_for_seconds: float | None
    reserved_for_reads: int | None
    reserved_reason: str
    final_reason: str | None
    currency: str
    quantity: str
    type: str
    client_external_id: str
    connection_id: str
    initiated_by: str
    partner_external_id: str | None
    notes: str | None
    retriable: bool
    extra_fields: dict[str, Any]
    created_at: datetime
    created_mono: float
    reads: int = 0
    flipped_at: datetime | None = None
    override: _Snapshot | None = field(default=None)

    def _final_reason(self) -> str | None:
        if self.final_status == "cleared":
            return None
        if self.final_status == "reserved":
            return self.final_reason or self.reserved_reason
        return self.final_reason or DEFAULT_RELEASED_REASON

    def observe(self) -> _Snapshot:
        """Return (status, reason, updatedAt) as a read made now would see them (no read counted)."""
        if self.override is not None:
            return self.override
        if self.final_status == "reserved":
            return "reserved", self._final_reason(), self.created_at
        if self.flipped_at is None:
            seconds, reads = self.reserved_for_seconds, self.reserved_for_reads
            if seconds is not None and time.monotonic() - self.created_mono < seconds:
                return "reserved", self.reserved_reason, self.created_at
            if reads is not None and self.reads < reads:
                return "reserved", self.reserved_reason, self.created_at
            if seconds is None and reads is None:
                self.flipped_at = self.created_at
            elif reads is None and seconds is not None:
                self.flipped_at = self.created_at + timedelta(seconds=seconds)
            else:
                self.flipped_at = max(_now(), self.created_at + timedelta(seconds=seconds or 0))
        return self.final_status, self._final_reason(), self.flipped_at

    def render(self, snapshot: _Snapshot | None = None) -> dict[str, Any]:
        """
        Build the API JSON record.

        :param snapshot: (status, reason, updatedAt); observed now when omitted.
        """
        status, reason, updated = snapshot if snapshot is not None else self.observe()
        record: dict[str, Any] = {
            "id": self.id,
            "amount": {"currency": self.currency, "quantity": self.quantity},
            "connectionId": self.connection_id,
            "clientExternalId": self.client_external_id,
        }
        if self.partner_external_id is not None:
            record["partnerExternalId"] = self.partner_external_id
        record["initiatedBy"] = self.initiated_by
        if self.notes is not None:
            record["notes"] = self.notes
        record.update(
            {
                "createdAt": _iso(self.created_at),
                "updatedAt": _iso(updated),
                "retriable": self.retriable,
                "reason": reason,
                "status": status,
                "type": self.type,
            }
        )
        record.update(copy.deepcopy(self.extra_fields))
        return record


class _State:
    """All mutable simulator state; ``lock`` guards everything but the fault queue (which has its own)."""

    def __init__(self, token: str, enterprise_id: str) -> None:
        self.lock = threading.Lock()
        self.token = token
        self.enterprise_id = enterprise_id
        self.allocations: dict[str, _Allocation] = {}
        self.members: set[str] = set()
        self.faults = _FaultQueue()
        self.requests: list[tuple[str, str, str, float]] = []
        self._last_created: datetime | None = None
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.allocations.clear()
            self.members = {self.enterprise_id, UNLICENSED_ENTERPRISE_ID}
            self.requests.clear()
        self.faults.clear()

    def record_request(self, method: str, path: str, query: str) -> None:
        with self.lock:
            self.requests.append((method, path, query, time.monotonic()))

    def next_created_at(self) -> datetime:
        """Now, or just after the last default ``createdAt``: insertion order == createdAt order within a tick."""
        created_at = _now()
        if self._last_created is not None and created_at <= self._last_created:
            created_at = self._last_created + timedelta(microseconds=1)
        self._last_created = created_at
        return created_at
