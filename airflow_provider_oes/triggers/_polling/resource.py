"""What the poller needs to know of a kind of record it waits for: the :class:`Resource` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_oes._rate_limit import RateLimiter
    from airflow_provider_oes.exceptions import OESError
    from airflow_provider_oes.hooks.async_client import OESAsyncClient

R = TypeVar("R")


class PollReporter(Protocol):
    """What a poller reports through (``_metrics.PollerMetrics`` for allocations)."""

    on: bool
    waiting: int

    def due(self) -> bool:
        """True when a flush is due."""

    def event(self, status: object, updated_at: datetime | None = None) -> None:
        """A trigger event was handed over."""

    def reconciliation_finds(self, count: int) -> None:
        """The change feed's safety net found ``count`` records the feed had missed."""

    def flush(self, requests: Any = None, limiter: RateLimiter | None = None) -> None:
        """Send what was gathered, with the connection's request metrics and limiter gauges."""


class Resource(Protocol[R]):
    """One kind of record the shared poller waits for (allocations, settlements): how it is read and judged.

    Everything else (registration, waiter chains, the shared client and limiter, strategies and their fallback,
    gc, metrics flushing) is the poller's and the same for every resource. Implementations keep no state: one
    instance serves every poller of its kind.
    """

    name: str
    """Singular noun in logs and task names (``allocation``); also the registry's key for this resource."""
    plural: str
    """Plural noun in logs (``allocations``)."""
    batch_kind: str
    """Metrics request kind of a list request for a batch of ids."""
    single_kind: str
    """Metrics request kind of the GET of one record."""
    has_feed: bool
    """Whether the change-feed strategy serves it (otherwise a connection's ``feed`` means id batches)."""

    def reporter(self, conn_id: str, enterprise_id: str) -> PollReporter:
        """A new reporter for one poller."""

    async def list_batch(
        self, client: OESAsyncClient, enterprise_id: str, ids: list[str]
    ) -> tuple[list[Any], float | None]:
        """One list request for ``ids``: the raw records and the server time (``Date``) of the answer, if any."""

    async def read_one(self, client: OESAsyncClient, record_id: str, enterprise_id: str) -> tuple[R, float | None]:
        """The GET of one record (complete: it may go into an event) and the server time of the answer."""

    def parse(self, record: object, *, record_id: str, enterprise_id: str, position: int) -> R:
        """Validate one listed record asked for as ``record_id``; raise an ``OESError`` naming what is wrong."""

    def is_complete(self, record: R) -> bool:
        """Whether an event may carry this record as it is (else it is read with :meth:`read_one` first)."""

    def is_final(self, record: R) -> bool:
        """Whether the record ends every wait for it."""

    def is_failing(self, record: R) -> bool:
        """Whether the record ends the waits that asked to fail fast (a failure that is not final)."""

    def event(self, record: R, enterprise_id: str) -> dict[str, Any]:
        """The event payload handed to the triggers whose wait the record ends."""

    def error_event(self, exc: OESError, record_id: str) -> dict[str, Any]:
        """The event payload of a permanent error about ``record_id``."""

    def event_metric(self, record: R) -> tuple[object, datetime | None]:
        """The status an event is counted under and the record's ``updatedAt`` (for the event delay)."""

    def payload_metric(self, event: dict[str, Any]) -> tuple[object, datetime | None]:
        """Likewise, from an event payload handed over without its record (``error`` for an error event)."""

    def warning(self, record: R) -> str | None:
        """A warning about a record that keeps its triggers waiting (a failure, an unknown status), if any."""
