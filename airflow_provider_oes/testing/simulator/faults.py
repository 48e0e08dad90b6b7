"""
Fault injection: the kinds of fault, the FIFO queue they wait in, and how record faults corrupt a record.

Each API request takes at most one fault: the first queued fault that matches it (``allocation_id=None``
matches every request; an id matches the single GET of that id and list requests whose
``allocationIds`` contain it). Transport faults are played by the gateway (:mod:`.gateway`) before
auth and validation; record faults are taken by a request that would otherwise answer 200.
"""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass
from typing import Any

TRANSPORT_FAULTS = ("500", "502", "503", "429", "slow", "drop", "non_json")
RECORD_FAULTS = ("missing_fields", "wrong_types", "unknown_status", "wrong_id")
#: Every fault kind accepted by :meth:`OESSimulator.inject_fault`.
FAULT_KINDS = TRANSPORT_FAULTS + RECORD_FAULTS

#: status, message and error name of the faults that answer an HTTP error.
FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "500": (500, "Internal server error (simulated fault)", "InternalServerError"),
    "502": (502, "Bad gateway (simulated fault)", "BadGatewayError"),
    "503": (503, "Service unavailable (simulated fault)", "ServiceUnavailableError"),
    "429": (429, "Too many requests (simulated fault)", "RateLimitExceededError"),
}


@dataclass
class Fault:
    kind: str
    count: int
    allocation_id: str | None
    retry_after: float | str | None
    delay: float | None

    @classmethod
    def checked(
        cls, kind: str, count: int, allocation_id: str | None, retry: float | str | None, delay: float | None
    ) -> Fault:
        """Validate the arguments of :meth:`OESSimulator.inject_fault` and build the fault."""
        if str(kind) not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        return cls(str(kind), int(count), allocation_id, retry, delay)

    def matches(self, ids: list[str] | None) -> bool:
        if self.allocation_id is None:
            return True
        return ids is not None and self.allocation_id in ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "allocation_id": self.allocation_id,
            "retry_after": self.retry_after,
            "delay": self.delay,
        }


class FaultQueue:
    """The queued faults, first to be consumed first (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def as_dicts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def take(self, ids: list[str] | None, *, record_kind: bool) -> Fault | None:
        """
        Consume one use of the first queued fault matching the request, if it is of the wanted family.

        :param ids: allocation ids the request concerns (None if unknown).
        :param record_kind: True to take record faults, False to take transport faults.
        """
        with self._lock:
            for index, fault in enumerate(self._faults):
                if not fault.matches(ids):
                    continue
                if (fault.kind in RECORD_FAULTS) != record_kind:
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[index]
                return copy.copy(fault)
        return None


def apply_record_fault(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """Corrupt one API record the way the record fault ``kind`` says."""
    if kind == "missing_fields":
        record.pop("status", None)
        record.pop("amount", None)
    elif kind == "wrong_types":
        record["retriable"] = "yes"
        record["amount"] = {**record.get("amount", {}), "quantity": 12.5}
    elif kind == "unknown_status":
        record["status"] = "pending_review"
    elif kind == "wrong_id":
        other = str(uuid.uuid4())
        while other == record["id"]:  # pragma: no cover - astronomically unlikely
            other = str(uuid.uuid4())
        record.update({"id": other, "status": "cleared", "reason": None})
    return record


def apply_settlement_fault(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """Corrupt one record of a settlement route (a settlement, a transfer, a dispute or a partner) by ``kind``."""
    if kind == "missing_fields":
        record.pop("status", None)
        record.pop("createdAt", None)
    elif kind == "wrong_types":
        record["id"] = 12345
        if "quantity" in record:
            record["quantity"] = 12.5
    elif kind == "unknown_status":
        record["status"] = "on_hold"
    elif kind == "wrong_id":
        other = str(uuid.uuid4())
        record["id"] = other
        if "finalizedAt" not in record and "partnerId" in record:  # a settlement: the worst lie, completed
            record.update({"status": "completed", "finalizedAt": record.get("updatedAt")})
    return record
