"""
The simulator's state: allocations, their timelines and scheduled flips, and what the server has seen.

Every status change is materialised when it happens (never computed lazily at read time), stamped with
``updatedAt`` from the simulator's clock, and kept in the feed index (:mod:`.feed_index`) while final.

* Timelines: an allocation added with ``reserved_for_seconds`` / ``reserved_for_reads`` is ``reserved``
  until both conditions hold, then shows its final status. The time condition fires on its own
  (``updatedAt`` = ``createdAt`` + the seconds); the reads condition only advances when the record is
  served (by the single GET, or as an item of a list page). A feed query (``statuses=cleared,released``)
  never serves a reserved record, so feed tests use time-based timelines or explicit flips.
* Flips: :meth:`State.flip` changes a status now or, scheduled, at a given monotonic time; ``late_by``
  stamps ``updatedAt`` that many seconds in the past ("late commit": the row lands behind a reader's
  watermark). An explicit flip ends the allocation's timeline.
* Due timeline events and scheduled flips are applied by :meth:`State.advance`, which every API request
  and every control read calls first, so no observer can see the state before a due change.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_RELEASED_REASON,
    FINAL_STATUSES,
    UNLICENSED_ENTERPRISE_ID,
    Clock,
    iso_ms,
)
from airflow_provider_oes.testing.simulator.faults import FaultQueue
from airflow_provider_oes.testing.simulator.feed_index import FinalIndex, Key
from airflow_provider_oes.testing.simulator.rate_limit import TokenRateLimit
from airflow_provider_oes.testing.simulator.settlement_state import SettlementBook


@dataclass(slots=True, eq=False)
class Allocation:
    id: str
    enterprise_id: str
    type: str
    currency: str
    quantity: str
    connection_id: str
    partner_id: str
    client_external_id: str
    initiated_by: str
    partner_external_id: str | None
    notes: str | None
    retriable: bool
    extra_fields: dict[str, Any]
    created_ms: int
    final_status: str
    final_reason: str | None
    reserved_reason: str
    reserved_for_seconds: float | None
    reserved_for_reads: int | None
    status: str
    reason: str | None
    updated_ms: int
    #: the timeline still decides the status (False once final or explicitly flipped)
    scripted: bool
    #: the time condition of the timeline has not fired yet
    waiting_time: bool
    reads: int = 0

    @property
    def key(self) -> Key:
        return (self.updated_ms, self.created_ms, self.id)

    def final_reason_text(self) -> str | None:
        """``reason`` once the timeline is over: none for cleared, the given or default one otherwise."""
        if self.final_status == "cleared":
            return None
        if self.final_status == "reserved":
            return self.final_reason or self.reserved_reason
        return self.final_reason or DEFAULT_RELEASED_REASON

    def render(self) -> dict[str, Any]:
        """Build the API JSON record (spec field order; optional fields omitted when unset)."""
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
        record["createdAt"] = iso_ms(self.created_ms)
        record["updatedAt"] = iso_ms(self.updated_ms)
        record["retriable"] = self.retriable
        record["reason"] = self.reason
        record["status"] = self.status
        record["type"] = self.type
        if self.extra_fields:
            record.update(copy.deepcopy(self.extra_fields))
        return record


@dataclass(frozen=True)
class Flip:
    """A scheduled status change (``status=None``: the timeline's time condition)."""

    allocation_id: str
    status: str | None = None
    reason: str | None = None
    late_by: float = 0.0


class State:
    """All mutable simulator state; ``lock`` guards everything but the fault queue and the rate limit."""

    def __init__(
        self,
        token: str,
        enterprise_id: str,
        clock_offset: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self._token = token
        self.enterprise_id = enterprise_id
        #: what :meth:`reset` restores: the clock offset and the rate limit given at construction
        self.initial_clock_offset = clock_offset
        self.initial_rate_limit = rate_limit
        self.clock = Clock(clock_offset)
        self.faults = FaultQueue()
        self.rate_limit = TokenRateLimit()
        self.allocations: dict[str, Allocation] = {}
        #: partners, settlements and disputes (:mod:`.settlement_state`), under the same lock
        self.settlements = SettlementBook()
        self.index = FinalIndex()
        self.members: set[str] = set()
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str, float]] = []
        self.enterprise_headers: list[str | None] = []
        #: (status, only the feed query) the list endpoint answers instead, or None
        self.list_rejection: tuple[int, bool] | None = None
        self._schedule: list[tuple[float, int, Flip]] = []
        self._after_requests: list[tuple[int, list[Flip]]] = []
        self._sequence = itertools.count()
        self._last_created_ms = 0
        self.reset()

    @property
    def token(self) -> str:
        """The simulator's own accepted token."""
        return self._token

    @token.setter
    def token(self, token: str) -> None:
        # replacing the token (tests make the server refuse a client's token this way) un-accepts the old one
        with self.lock:
            self.tokens.discard(self._token)
            self.tokens.add(token)
            self._token = token

    def reset(self) -> None:
        with self.lock:
            self.allocations.clear()
            self.settlements.clear()
            self.index.clear()
            self.members = {self.enterprise_id, UNLICENSED_ENTERPRISE_ID}
            self.tokens = {self.token}
            self.requests.clear()
            self.enterprise_headers.clear()
            self.list_rejection = None
            self._schedule.clear()
            self._after_requests.clear()
            self._last_created_ms = 0
        self.faults.clear()
        self.rate_limit.reset()
        limit, window = self.initial_rate_limit or (None, 60.0)
        self.rate_limit.configure(limit, window)
        self.set_clock_offset(self.initial_clock_offset)

    # ------------------------------------------------------------------ requests seen
    def record_request(self, method: str, path: str, query: str, enterprise_header: str | None) -> None:
        with self.lock:
            self.requests.append((method, path, query, time.monotonic()))
            self.enterprise_headers.append(enterprise_header)

    def request_answered(self) -> None:
        """Count one answered API request towards the flips waiting for requests, and apply those due."""
        with self.lock:
            due: list[Flip] = []
            waiting = []
            for remaining, flips in self._after_requests:
                if remaining <= 1:
                    due.extend(flips)
                else:
                    waiting.append((remaining - 1, flips))
            self._after_requests = waiting
            now = self.clock.now_ms()
            for flip in due:
                self._apply(flip, now)

    # ------------------------------------------------------------------ allocations
    def next_created_ms(self) -> int:
        """Now, or 1 ms after the previous default ``createdAt``: insertion order is createdAt order."""
        created = max(self.clock.now_ms(), self._last_created_ms + 1)
        self._last_created_ms = created
        return created

    def set_clock_offset(self, seconds: float) -> None:
        """Skew the clock; default ``createdAt`` values follow the new clock (even backwards)."""
        with self.lock:
            self.clock.offset = seconds
            self._last_created_ms = 0

    def note_created_ms(self, created_ms: int) -> None:
        """Default ``createdAt`` values come after ``created_ms`` from now on (caller holds the lock)."""
        self._last_created_ms = max(self._last_created_ms, created_ms)

    def insert(self, alloc: Allocation, created_mono: float) -> None:
        """Add a new allocation (caller holds the lock and has checked the id is free)."""
        self.allocations[alloc.id] = alloc
        self.members.add(alloc.enterprise_id)
        if alloc.waiting_time and alloc.reserved_for_seconds is not None:
            self._push(created_mono + alloc.reserved_for_seconds, Flip(alloc.id))
        self._finish_timeline(alloc, alloc.created_ms)

    def get(self, allocation_id: str) -> Allocation:
        """The allocation (caller holds the lock); KeyError naming the id when unknown."""
        alloc = self.allocations.get(allocation_id)
        if alloc is None:
            raise KeyError(f"unknown allocation {allocation_id}")
        return alloc

    def serve(self, alloc: Allocation) -> dict[str, Any]:
        """Render a record for an API answer: a read, which may end a reads-counted timeline."""
        record = alloc.render()
        alloc.reads += 1
        if alloc.scripted:
            self._finish_timeline(alloc, self.clock.now_ms())
        return record

    # ------------------------------------------------------------------ flips
    def flip(self, allocation_id: str, status: str, reason: str | None = None, late_by: float = 0.0) -> None:
        """Change a status now (caller holds the lock); ends the allocation's timeline."""
        self.get(allocation_id)
        self._apply(Flip(allocation_id, status, reason, late_by), self.clock.now_ms())

    def schedule(self, flip: Flip, at_monotonic: float) -> None:
        """Apply ``flip`` once ``time.monotonic()`` reaches ``at_monotonic`` (caller holds the lock)."""
        self.get(flip.allocation_id)
        self._push(at_monotonic, flip)

    def schedule_after_requests(self, flips: list[Flip], requests: int) -> None:
        """Apply ``flips`` right after the next ``requests`` API requests are answered."""
        for flip in flips:
            self.get(flip.allocation_id)
        self._after_requests.append((requests, flips))

    def pending_flips(self) -> int:
        """Explicit flips scheduled and not yet applied (timeline events not counted)."""
        with self.lock:
            timed = sum(1 for _, _, flip in self._schedule if flip.status is not None)
            return timed + sum(len(flips) for _, flips in self._after_requests)

    def advance(self) -> None:
        """Apply every timeline event and scheduled flip that is due (caller holds the lock)."""
        now = time.monotonic()
        self.settlements.advance(now, self.clock)
        if not self._schedule or self._schedule[0][0] > now:
            return
        wall_at = self.clock.wall_at_monotonic()  # one reading: flips due together get one stamp
        while self._schedule and self._schedule[0][0] <= now:
            due, _, flip = heapq.heappop(self._schedule)
            self._apply(flip, int(wall_at(due) * 1000))

    def _push(self, at_monotonic: float, flip: Flip) -> None:
        heapq.heappush(self._schedule, (at_monotonic, next(self._sequence), flip))

    def _apply(self, flip: Flip, stamp_ms: int) -> None:
        alloc = self.allocations.get(flip.allocation_id)
        if alloc is None:  # removed by a reset after it was scheduled
            return
        if flip.status is None:  # the timeline's time condition, stamped createdAt + the seconds
            if alloc.scripted:
                alloc.waiting_time = False
                self._finish_timeline(alloc, alloc.created_ms + round((alloc.reserved_for_seconds or 0) * 1000))
            return
        reason = flip.reason
        if reason is None and flip.status == "reserved":
            reason = alloc.reserved_reason
        elif reason is None and flip.status == "released":
            reason = alloc.final_reason or DEFAULT_RELEASED_REASON
        alloc.scripted = False
        self._set(alloc, flip.status, reason, stamp_ms - round(flip.late_by * 1000))

    def _finish_timeline(self, alloc: Allocation, stamp_ms: int) -> None:
        """End the timeline once both of its conditions hold; ``stamp_ms``: when the later one did."""
        reads = alloc.reserved_for_reads
        if alloc.waiting_time or (reads is not None and alloc.reads < reads):
            return
        alloc.scripted = False
        if alloc.final_status != "reserved":
            self._set(alloc, alloc.final_status, alloc.final_reason_text(), stamp_ms)

    def _set(self, alloc: Allocation, status: str, reason: str | None, stamp_ms: int) -> None:
        if alloc.status in FINAL_STATUSES:
            self.index.remove(alloc.enterprise_id, alloc.key)
        alloc.status, alloc.reason = status, reason
        alloc.updated_ms = max(stamp_ms, alloc.created_ms)
        if status in FINAL_STATUSES:
            self.index.add(alloc.enterprise_id, alloc.key)
