"""
The Python scripting API of a simulator: add allocations, change them, queue faults, read the counts.

:class:`OESSimulator` inherits these methods; :class:`OESSimulatorClient` offers the same ones over HTTP.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_CONNECTION_ID,
    DEFAULT_INITIATED_BY,
    DEFAULT_RELEASED_REASON,
    DEFAULT_RESERVED_REASON,
    STATUSES,
    TYPES,
    _is_uuid,
    _now,
    _parse_iso,
)
from airflow_provider_oes.testing.simulator.faults import _Fault
from airflow_provider_oes.testing.simulator.state import _Allocation, _State


class _Scripting:
    """Scripting methods over a :class:`_State` (``self._state``)."""

    _state: _State

    @property
    def token(self) -> str:
        """The bearer token the API accepts."""
        return self._state.token

    @property
    def enterprise_id(self) -> str:
        """The default enterprise id."""
        return self._state.enterprise_id

    @property
    def request_count(self) -> int:
        """Number of API requests served (control-API requests are not counted)."""
        with self._state.lock:
            return len(self._state.requests)

    @property
    def requests(self) -> list[tuple[str, str, str, float]]:
        """A copy of the API requests served: ``(method, path, query_string, time.monotonic())``."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The queued faults, first to be consumed first."""
        return self._state.faults.as_dicts()

    def add_allocation(
        self,
        allocation_id: str | None = None,
        final_status: str = "cleared",
        reserved_for_seconds: float | None = None,
        reserved_for_reads: int | None = None,
        reserved_reason: str = DEFAULT_RESERVED_REASON,
        final_reason: str | None = None,
        currency: str = "ofctbtc",
        quantity: str | int = "100000000",
        type: str = "allocation",
        enterprise_id: str | None = None,
        client_external_id: str | None = None,
        connection_id: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        initiated_by: str = DEFAULT_INITIATED_BY,
        partner_external_id: str | None = None,
        notes: str | None = None,
        retriable: bool = False,
        created_at: datetime | str | None = None,
    ) -> str:
        """
        Add an allocation and script its timeline; return its id.

        The allocation is ``reserved`` until ``reserved_for_seconds`` have passed since this call
        and it has been read ``reserved_for_reads`` times (either or both may be given); it then
        shows ``final_status`` with ``updatedAt`` set to the moment of the flip. With neither given
        it is created directly in ``final_status``. ``final_status="reserved"`` stays reserved.

        :param allocation_id: UUID of the record; a new uuid4 when None.
        :param final_status: ``cleared``, ``released`` or ``reserved``.
        :param reserved_for_seconds: seconds the record stays reserved after creation.
        :param reserved_for_reads: number of API reads (single GET or list item) answered reserved.
        :param reserved_reason: ``reason`` while reserved.
        :param final_reason: ``reason`` once final (``released`` defaults to "insufficient balance";
            ``cleared`` always has ``reason: null`` unless overridden through ``extra_fields``).
        :param currency: ``amount.currency``.
        :param quantity: ``amount.quantity`` in base units (kept as a string, exactly).
        :param type: ``allocation`` or ``deallocation``.
        :param enterprise_id: owning enterprise (default: the simulator's); the caller becomes a member.
        :param client_external_id: ``clientExternalId`` (default derived from the id).
        :param connection_id: ``connectionId`` (default :data:`DEFAULT_CONNECTION_ID`).
        :param extra_fields: merged last into the JSON record (may add or override any field).
        :param initiated_by: ``initiatedBy``.
        :param partner_external_id: ``partnerExternalId`` (omitted when None).
        :param notes: ``notes`` (omitted when None).
        :param retriable: ``retriable``.
        :param created_at: ``createdAt`` (datetime or ISO string; default now).
        """
        if final_status not in STATUSES:
            raise ValueError(f"final_status must be one of {STATUSES}, not {final_status!r}")
        if type not in TYPES:
            raise ValueError(f"type must be one of {TYPES}, not {type!r}")
        if reserved_for_seconds is not None and reserved_for_seconds < 0:
            raise ValueError("reserved_for_seconds must be >= 0")
        if reserved_for_reads is not None and reserved_for_reads < 0:
            raise ValueError("reserved_for_reads must be >= 0")
        allocation_id = allocation_id or str(uuid.uuid4())
        if not _is_uuid(allocation_id):
            raise ValueError(f"allocation_id must be a UUID, not {allocation_id!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, (str, int)):
            raise TypeError("quantity must be a string (or an int) of base units")
        if isinstance(created_at, str):
            created_at = _parse_iso(created_at)
        enterprise = enterprise_id or self.enterprise_id
        state = self._state
        with state.lock:
            if allocation_id in state.allocations:
                raise ValueError(f"allocation {allocation_id} already exists")
            if created_at is None:
                created_at = state.next_created_at()
            elif created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=timezone.utc)
            state.allocations[allocation_id] = _Allocation(
                id=allocation_id,
                enterprise_id=enterprise,
                final_status=final_status,
                reserved_for_seconds=reserved_for_seconds,
                reserved_for_reads=reserved_for_reads,
                reserved_reason=reserved_reason,
                final_reason=final_reason,
                currency=currency,
                quantity=str(quantity),
                type=type,
                client_external_id=client_external_id or f"sim-{allocation_id[:8]}",
                connection_id=connection_id or DEFAULT_CONNECTION_ID,
                initiated_by=initiated_by,
                partner_external_id=partner_external_id,
                notes=notes,
                retriable=retriable,
                extra_fields=dict(extra_fields or {}),
                created_at=created_at,
                created_mono=time.monotonic(),
            )
            state.members.add(enterprise)
        return allocation_id

    def set_status(self, allocation_id: str, status: str, reason: str | None = None) -> None:
        """
        Change an allocation's status now, overriding its timeline (``updatedAt`` becomes now).

        :param allocation_id: the allocation to change.
        :param status: ``cleared``, ``released`` or ``reserved``.
        :param reason: new ``reason``; default None for cleared, the reserved reason for reserved,
            the final reason or "insufficient balance" for released.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        with self._state.lock:
            alloc = self._state.allocations.get(allocation_id)
            if alloc is None:
                raise KeyError(f"unknown allocation {allocation_id}")
            if reason is None and status == "reserved":
                reason = alloc.reserved_reason
            elif reason is None and status == "released":
                reason = alloc.final_reason or DEFAULT_RELEASED_REASON
            updated = max(_now(), alloc.created_at)
            alloc.override = (status, reason, updated)

    def get_record(self, allocation_id: str) -> dict[str, Any]:
        """
        Return the allocation's current JSON record (API shape) without counting a read.

        :param allocation_id: the allocation.
        """
        with self._state.lock:
            alloc = self._state.allocations.get(allocation_id)
            if alloc is None:
                raise KeyError(f"unknown allocation {allocation_id}")
            return alloc.render()

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        allocation_id: str | None = None,
        retry_after: float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """
        Queue a fault for the next ``count`` matching API requests.

        :param kind: one of :data:`FAULT_KINDS`.
        :param count: number of requests it applies to (>= 1).
        :param allocation_id: only requests for this allocation; None matches any request.
        :param retry_after: ``Retry-After`` header value for ``429`` (no header when None).
        :param delay: seconds to wait for ``slow`` (default 1.0).
        """
        self._state.faults.add(_Fault.checked(kind, count, allocation_id, retry_after, delay))

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        self._state.faults.clear()

    def reset_counts(self) -> None:
        """Forget the API requests served so far."""
        with self._state.lock:
            self._state.requests.clear()

    def reset(self) -> None:
        """Forget allocations, faults, counts and added enterprise memberships."""
        self._state.reset()
