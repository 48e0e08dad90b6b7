"""Allocations as a resource of the shared poller: :data:`ALLOCATIONS`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api import parse_allocation_record
from airflow_provider_oes._metrics import PollerMetrics
from airflow_provider_oes._time import parse_aware_datetime
from airflow_provider_oes.triggers._events import TERMINAL, error_event, terminal_event

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_oes.exceptions import OESError
    from airflow_provider_oes.hooks.async_client import OESAsyncClient
    from airflow_provider_oes.models import Allocation

__all__ = ["ALLOCATIONS", "AllocationResource"]


class AllocationResource:
    """Allocations: final on ``cleared`` or ``released``; the listed record is the whole record; a change feed."""

    name = "allocation"
    plural = "allocations"
    batch_kind = "id_batch"
    single_kind = "single"
    has_feed = True

    def reporter(self, conn_id: str, enterprise_id: str) -> PollerMetrics:
        """Events by status, reconciliation finds and ``oes.allocations.waiting``."""
        return PollerMetrics(conn_id, enterprise_id)

    async def list_batch(
        self, client: OESAsyncClient, enterprise_id: str, ids: list[str]
    ) -> tuple[list[Any], float | None]:
        """``GET .../clients/allocations?allocationIds=...`` with one page as long as the batch."""
        page = await client.list_allocations_page(
            enterprise_id, allocation_ids=ids, page_size=len(ids), kind=self.batch_kind
        )
        return page.records, page.server_time

    async def read_one(
        self, client: OESAsyncClient, record_id: str, enterprise_id: str
    ) -> tuple[Allocation, float | None]:
        """The single GET."""
        return await client.get_allocation_at(record_id, enterprise_id)

    def parse(self, record: object, *, record_id: str, enterprise_id: str, position: int) -> Allocation:
        """:func:`~airflow_provider_oes._api.parse_allocation_record` (its id must be the one asked for)."""
        return parse_allocation_record(record, allocation_id=record_id, enterprise_id=enterprise_id)

    def is_complete(self, record: Allocation) -> bool:
        """Always: the list's record is the allocation the event carries."""
        return True

    def is_final(self, record: Allocation) -> bool:
        """``cleared`` or ``released``."""
        return record.is_terminal

    def is_failing(self, record: Allocation) -> bool:
        """Never: an allocation has no failure that is not final."""
        return False

    def event(self, record: Allocation, enterprise_id: str) -> dict[str, Any]:
        """The ``terminal`` event."""
        return terminal_event(record, enterprise_id)

    def error_event(self, exc: OESError, record_id: str) -> dict[str, Any]:
        """The ``error`` event, naming the allocation when the error does not."""
        return error_event(exc, record_id)

    def event_metric(self, record: Allocation) -> tuple[object, datetime | None]:
        """The status as the model holds it (its ``str()`` is left to the flush) and ``updatedAt``."""
        return record.status, record.updated_at

    def payload_metric(self, event: dict[str, Any]) -> tuple[object, datetime | None]:
        """``error``, or the final status and ``updatedAt`` read from a ``terminal`` payload."""
        if event.get("status") != TERMINAL:
            return "error", None
        record = event.get("allocation")
        record = record if isinstance(record, dict) else {}
        return str(record.get("status")), parse_aware_datetime(record.get("updatedAt"))

    def warning(self, record: Allocation) -> str | None:
        """An unknown status (never treated as final)."""
        if record.has_known_status:
            return None
        return (
            f"Allocation {record.id} has status {record.status!r}, which this provider does not know; it is not "
            "treated as final. Still waiting."
        )


ALLOCATIONS = AllocationResource()
"""The allocation resource (stateless: one for every poller)."""
