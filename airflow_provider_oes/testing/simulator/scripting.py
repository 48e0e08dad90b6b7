"""
The Python scripting API for allocations: add them (one or in bulk), flip them now or on a schedule.

:class:`OESSimulator` inherits these methods; :class:`OESSimulatorClient` offers the same ones over HTTP.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_CONNECTION_ID,
    DEFAULT_INITIATED_BY,
    DEFAULT_PARTNER_ID,
    DEFAULT_RESERVED_REASON,
    STATUSES,
    TYPES,
    from_ms,
    is_uuid,
    parse_iso,
    to_ms,
    uuid4_strings,
)
from airflow_provider_oes.testing.simulator.state import Allocation, Flip

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from airflow_provider_oes.testing.simulator.state import State


def _check_status(status: str, name: str = "status") -> str:
    if status not in STATUSES:
        raise ValueError(f"{name} must be one of {STATUSES}, not {status!r}")
    return status


def _timeline_fields(
    final_status: str,
    reserved_for_seconds: float | None,
    reserved_for_reads: int | None,
    reserved_reason: str,
    final_reason: str | None,
) -> dict[str, Any]:
    """Validate a timeline; the ``Allocation`` fields of a freshly added allocation (still reserved)."""
    _check_status(final_status, "final_status")
    if reserved_for_seconds is not None and reserved_for_seconds < 0:
        raise ValueError("reserved_for_seconds must be >= 0")
    if reserved_for_reads is not None and reserved_for_reads < 0:
        raise ValueError("reserved_for_reads must be >= 0")
    reserved_forever = final_status == "reserved"
    return {
        "final_status": final_status,
        "reserved_for_seconds": reserved_for_seconds,
        "final_reason": final_reason,
        "reserved_reason": reserved_reason,
        "reserved_for_reads": reserved_for_reads,
        "status": "reserved",
        "reason": (final_reason or reserved_reason) if reserved_forever else reserved_reason,
        "scripted": True,
        "waiting_time": bool(reserved_for_seconds) and not reserved_forever,
    }


def _record_fields(quantity: str | int, type: str, **fields: Any) -> dict[str, Any]:
    """Validate the record's own fields; the ``Allocation`` fields they set."""
    if type not in TYPES:
        raise ValueError(f"type must be one of {TYPES}, not {type!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, (str, int)):
        raise TypeError("quantity must be a string (or an int) of base units")
    return {"quantity": str(quantity), "type": type, **fields}


class AllocationScripting:
    """Allocation scripting over a :class:`State` (``self._state``)."""

    _state: State

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
        partner_id: str | None = None,
    ) -> str:
        """
        Add an allocation and script its timeline; return its id.

        The allocation is ``reserved`` until ``reserved_for_seconds`` have passed since this call
        and it has been read ``reserved_for_reads`` times (either or both may be given); it then
        shows ``final_status`` with ``updatedAt`` set to the moment of the flip (for the time
        condition: ``createdAt`` + the seconds). With neither given it is created directly in
        ``final_status``. ``final_status="reserved"`` stays reserved. Reads are counted only when the
        record is served (single GET or list item): a feed query for final rows never reads a reserved
        one, so feed tests use ``reserved_for_seconds`` or explicit flips.

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
        :param created_at: ``createdAt`` (datetime or ISO string, kept to the millisecond; default: the
            simulator's now, 1 ms after the previous default so that insertion order is createdAt order).
        :param partner_id: the partner of the connection, matched by the list's ``partnerIds`` filter (not
            a field of the record; default :data:`DEFAULT_PARTNER_ID`).
        """
        timeline = _timeline_fields(
            final_status, reserved_for_seconds, reserved_for_reads, reserved_reason, final_reason
        )
        allocation_id = allocation_id or str(uuid.uuid4())
        if not is_uuid(allocation_id):
            raise ValueError(f"allocation_id must be a UUID, not {allocation_id!r}")
        record = _record_fields(
            quantity,
            type,
            currency=currency,
            enterprise_id=enterprise_id or self._state.enterprise_id,
            connection_id=connection_id or DEFAULT_CONNECTION_ID,
            partner_id=partner_id or DEFAULT_PARTNER_ID,
            initiated_by=initiated_by,
            retriable=retriable,
            client_external_id=client_external_id or f"sim-{allocation_id[:8]}",
            partner_external_id=partner_external_id,
            notes=notes,
            extra_fields=dict(extra_fields or {}),
        )
        created = parse_iso(created_at) if isinstance(created_at, str) else created_at
        state = self._state
        with state.lock:
            if allocation_id in state.allocations:
                raise ValueError(f"allocation {allocation_id} already exists")
            created_ms = state.next_created_ms() if created is None else to_ms(created)
            alloc = Allocation(id=allocation_id, created_ms=created_ms, updated_ms=created_ms, **record, **timeline)
            state.insert(alloc, time.monotonic())
        return allocation_id

    def add_allocations(self, count: int, **options: Any) -> list[str]:
        """
        Add ``count`` allocations at once (100,000 in about a second); return their ids in createdAt order.

        By default they wait (``final_status="reserved"``) until flipped by :meth:`set_status` or
        :meth:`schedule_flips`. Their ``createdAt`` are 1 ms apart, the last one the simulator's now.

        :param count: how many to add (>= 1).
        :param options: keyword arguments of :meth:`add_allocation`, applied to every allocation added;
            not ``allocation_id``, ``client_external_id`` or ``created_at``, which are each record's own.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        per_record = sorted({"allocation_id", "client_external_id", "created_at"} & options.keys())
        if per_record:
            raise TypeError(f"add_allocations() sets {', '.join(per_record)} itself for each allocation")
        options.setdefault("final_status", "reserved")
        state = self._state
        first_ms = state.clock.now_ms() - (count - 1)
        # the first one goes through add_allocation, which checks every option; the others copy it
        ids = [self.add_allocation(created_at=from_ms(first_ms), **options)]
        ids += uuid4_strings(count - 1)
        with state.lock:
            template = state.get(ids[0])
            timeline = _timeline_fields(
                template.final_status,
                template.reserved_for_seconds,
                template.reserved_for_reads,
                template.reserved_reason,
                template.final_reason,
            )
            own = ("id", "client_external_id", "created_ms", "updated_ms")
            common = {f.name: getattr(template, f.name) for f in dataclasses.fields(template) if f.name not in own}
            common.update(timeline)
            created_mono = time.monotonic()
            for offset, allocation_id in enumerate(ids[1:], start=1):
                if allocation_id in state.allocations:  # pragma: no cover - a uuid4 collision
                    raise ValueError(f"allocation {allocation_id} already exists")
                created_ms = first_ms + offset
                alloc = Allocation(
                    id=allocation_id,
                    client_external_id=f"sim-{allocation_id[:8]}",
                    created_ms=created_ms,
                    updated_ms=created_ms,
                    **common,
                )
                state.insert(alloc, created_mono)
            state.note_created_ms(first_ms + count - 1)
        return ids

    def set_status(self, allocation_id: str, status: str, reason: str | None = None, late_by: float = 0.0) -> None:
        """
        Change an allocation's status now, ending its timeline (``updatedAt`` becomes the simulator's now).

        :param allocation_id: the allocation to change.
        :param status: ``cleared``, ``released`` or ``reserved``.
        :param reason: new ``reason``; default None for cleared, the reserved reason for reserved,
            the final reason or "insufficient balance" for released.
        :param late_by: stamp ``updatedAt`` this many seconds in the past ("late commit": the change
            becomes visible now but sorts behind rows a reader may already have passed); never before
            ``createdAt``.
        """
        _check_status(status)
        with self._state.lock:
            self._state.advance()
            self._state.flip(allocation_id, status, reason, late_by)

    def schedule_flips(
        self,
        allocation_ids: Sequence[str],
        status: str | Sequence[str] = "cleared",
        at: Sequence[float] | None = None,
        start: float = 0.0,
        rate: float | None = None,
        reason: str | None = None,
        late_by: float = 0.0,
    ) -> float:
        """
        Schedule status changes; each applies once its time comes, stamped with that time (less ``late_by``).

        When each id flips: at ``at[i]`` seconds from now if ``at`` is given; else steadily, ``rate`` per
        second from ``start`` seconds from now; else all at ``start`` (a burst).

        :param allocation_ids: the allocations to flip.
        :param status: the new status, or a sequence cycled over the ids (``("cleared", "released")``
            alternates them).
        :param at: seconds from now, one per id.
        :param start: seconds from now of the first flip (when ``at`` is not given).
        :param rate: flips per second (when ``at`` is not given).
        :param reason: the new ``reason`` (default as for :meth:`set_status`).
        :param late_by: stamp each ``updatedAt`` this many seconds before the moment it is applied.
        :return: seconds from now until the last flip.
        """
        statuses = [status] if isinstance(status, str) else list(status)
        if not statuses:
            raise ValueError("status must name at least one status")
        for one in statuses:
            _check_status(one)
        if at is not None and len(at) != len(allocation_ids):
            raise ValueError(f"at has {len(at)} times for {len(allocation_ids)} allocation ids")
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be > 0 flips per second, not {rate!r}")
        if at is not None:
            offsets = [float(seconds) for seconds in at]
        elif rate is not None:
            offsets = [start + index / rate for index in range(len(allocation_ids))]
        else:
            offsets = [float(start)] * len(allocation_ids)
        if any(seconds < 0 for seconds in offsets):
            raise ValueError("flip times must not be in the past")
        now = time.monotonic()
        with self._state.lock:
            for allocation_id, one, seconds in zip(allocation_ids, itertools.cycle(statuses), offsets):
                self._state.schedule(Flip(allocation_id, one, reason, late_by), now + seconds)
        return max(offsets, default=0.0)

    def flip_after_requests(
        self,
        allocation_ids: Sequence[str],
        status: str = "cleared",
        requests: int = 1,
        reason: str | None = None,
        late_by: float = 0.0,
    ) -> None:
        """
        Flip allocations right after the next ``requests`` API requests have been answered.

        Deterministic "changes while a client pages": answer page 0, flip, then answer page 1.

        :param allocation_ids: the allocations to flip.
        :param status: the new status.
        :param requests: how many API requests to answer first (>= 1).
        :param reason: the new ``reason`` (default as for :meth:`set_status`).
        :param late_by: stamp ``updatedAt`` this many seconds in the past.
        """
        _check_status(status)
        if requests < 1:
            raise ValueError("requests must be >= 1")
        with self._state.lock:
            flips = [Flip(i, status, reason, late_by) for i in allocation_ids]
            self._state.schedule_after_requests(flips, requests)

    @property
    def pending_flips(self) -> int:
        """Scheduled flips not yet applied (those whose time came are applied at the next request)."""
        with self._state.lock:
            self._state.advance()
        return self._state.pending_flips()

    def get_record(self, allocation_id: str) -> dict[str, Any]:
        """
        Return the allocation's current JSON record (API shape) without counting a read.

        :param allocation_id: the allocation.
        """
        with self._state.lock:
            self._state.advance()
            return self._state.get(allocation_id).render()

    def now(self) -> datetime:
        """The simulator's clock (the machine's plus :attr:`clock_offset`), to the millisecond."""
        return from_ms(self._state.clock.now_ms())
