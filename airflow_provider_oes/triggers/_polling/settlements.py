"""Settlements as a resource of the shared poller: :data:`SETTLEMENTS` (``docs/internals/settlement-poller.rst``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._metrics import FLUSH_PERIOD
from airflow_provider_oes._settlement_api import KIND_PAGE, KIND_SINGLE, parse_record
from airflow_provider_oes._settlement_api import SETTLEMENTS as SETTLEMENTS_LIST
from airflow_provider_oes.settlement_models import ListedSettlement, Settlement, SettlementDetails
from airflow_provider_oes.triggers._events import error_event
from airflow_provider_oes.triggers._settlement_events import settled_event

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_oes._rate_limit import RateLimiter
    from airflow_provider_oes.exceptions import OESError
    from airflow_provider_oes.hooks.async_client import OESAsyncClient

__all__ = ["SETTLEMENTS", "RequestMetrics", "SettlementRecord", "SettlementResource"]

SettlementRecord = Settlement | SettlementDetails
"""A settlement as listed (status only), or as its GET reads it, with its transfers and disputes (events)."""


class RequestMetrics:
    """A settlement poller's metrics: the connection's request metrics only, flushed every ``FLUSH_PERIOD``.

    Settlement events and a waiting gauge have no names yet (``_metrics.names``); an allocation poller of the
    same connection flushes the same request metrics too: whoever flushes sends them once.
    """

    __slots__ = ("_flushed", "on", "waiting")

    def __init__(self) -> None:
        self.on = True
        self.waiting = 0
        self._flushed: float | None = None

    def due(self) -> bool:
        """True every ``FLUSH_PERIOD`` seconds of the loop's clock."""
        return self._flushed is None or asyncio.get_running_loop().time() - self._flushed >= FLUSH_PERIOD

    def event(self, status: object, updated_at: datetime | None = None) -> None:
        """Not counted (no metric names for settlement events)."""

    def reconciliation_finds(self, count: int) -> None:
        """Not used: settlements have no change feed to reconcile."""

    def flush(self, requests: Any = None, limiter: RateLimiter | None = None) -> None:
        """Send the connection's request metrics (``requests``: its client's ``Batch``)."""
        self._flushed = asyncio.get_running_loop().time()
        if requests is not None and requests.on:
            requests.flush()


class SettlementResource:
    """Settlements: final on ``completed`` or ``rejected``; ``failed`` ends fail-fast waits only (BitGo retries
    it); listed in id batches (the list has no sort or date filter: no change feed); an event carries the
    settlement with its transfers, read by id once it ends a wait."""

    name = "settlement"
    plural = "settlements"
    batch_kind = KIND_PAGE
    single_kind = KIND_SINGLE
    has_feed = False

    def reporter(self, conn_id: str, enterprise_id: str) -> RequestMetrics:
        """The request metrics only."""
        return RequestMetrics()

    async def list_batch(
        self, client: OESAsyncClient, enterprise_id: str, ids: list[str]
    ) -> tuple[list[Any], float | None]:
        """``GET .../clients/settlements?settlementIds=...`` with one page as long as the batch (no server time:
        nothing reasons in it without a feed). A server that pages shorter only costs GETs: an id missing from
        the answer is read by id, never taken as settled."""
        return await client.list_settlements_page(enterprise_id, settlement_ids=ids, page_size=len(ids)), None

    async def read_one(
        self, client: OESAsyncClient, record_id: str, enterprise_id: str
    ) -> tuple[SettlementRecord, float | None]:
        """The GET by id, with every page of its transfers (a 404: unknown, or the client is no party to it)."""
        return await client.get_settlement(record_id, enterprise_id), None

    def parse(self, record: object, *, record_id: str, enterprise_id: str, position: int) -> SettlementRecord:
        """A listed settlement, validated by itself (an invalid one fails only its own waiters)."""
        what = f"{SETTLEMENTS_LIST.subject} of enterprise {enterprise_id!r}"
        return parse_record(ListedSettlement, record, what=what, enterprise_id=enterprise_id, position=position)

    def is_complete(self, record: SettlementRecord) -> bool:
        """Only a settlement read by id (with its transfers) goes into an event."""
        return isinstance(record, SettlementDetails)

    def is_final(self, record: SettlementRecord) -> bool:
        """``completed`` or ``rejected``."""
        return _settlement(record).is_final

    def is_failing(self, record: SettlementRecord) -> bool:
        """``failed``: final only for the sensors with ``fail_on_failed``."""
        return _settlement(record).is_failed

    def event(self, record: SettlementRecord, enterprise_id: str) -> dict[str, Any]:
        """The ``settled`` event (the poller asks only for a complete record)."""
        assert isinstance(record, SettlementDetails)
        return settled_event(record, enterprise_id)

    def error_event(self, exc: OESError, record_id: str) -> dict[str, Any]:
        """The ``error`` event (its ``allocation_id`` field stays for allocations)."""
        return error_event(exc)

    def event_metric(self, record: SettlementRecord) -> tuple[object, datetime | None]:
        """The settlement's status and ``updatedAt``."""
        settlement = _settlement(record)
        return settlement.status, settlement.updated_at

    def payload_metric(self, event: dict[str, Any]) -> tuple[object, datetime | None]:
        """The event's kind (``settled`` or ``error``)."""
        return str(event.get("status")), None

    def warning(self, record: SettlementRecord) -> str | None:
        """``failed`` (waiting on: BitGo retries it) and unknown statuses."""
        settlement = _settlement(record)
        if settlement.is_failed:
            return (
                f"Settlement {settlement.id} failed (reason given by BitGo: {settlement.reason or 'none given'}). "
                "BitGo retries failed settlements, so it is not final: still waiting until it is completed or "
                "rejected."
            )
        if not settlement.has_known_status:
            return (
                f"Settlement {settlement.id} has status {str(settlement.status)!r}, which this provider does not "
                "know; it is not treated as final. Still waiting."
            )
        return None


def _settlement(record: SettlementRecord) -> Settlement:
    return record.settlement if isinstance(record, SettlementDetails) else record


SETTLEMENTS = SettlementResource()
"""The settlement resource (stateless: one for every poller)."""
