"""The settlement change source: a subscription the watch loop reads like the allocation change feed.

Each poll reads the settlement transfers whose settlement changed since the last poll (less the overlap),
then the settlements they name by id; a periodic full read of the settlement list catches settlements
without transfers. Why it cannot miss a change: ``docs/internals/settlement-events.rst``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api.paths import UUID
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes._settlement_api import SETTLEMENTS, TRANSFERS
from airflow_provider_oes._settlement_query import SETTLEMENT_STATUSES
from airflow_provider_oes._time import format_timestamp, parse_timestamp
from airflow_provider_oes.exceptions import OESError, OESResponseError
from airflow_provider_oes.triggers._feed import FeedBatch, FeedRow
from airflow_provider_oes.triggers._settlement_watch.partners import PartnerWindows

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.triggers._settlement_watch.records import SettlementQuery
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers.settlement_event")

SCAN_SECONDS = 300.0
"""How often the whole settlement list (the watched statuses and partners) is read: the safety net for
settlements without transfers. It also runs on the first poll after a restart."""
MAX_PAGE_SIZE = 1000
"""The most rows asked for per page (the simulator's and the API's bound)."""
KEEP_BELOW_FLOOR = 900.0
"""Rows this far below the window's floor are still handed to it (it remembers 600 s below its floor)."""
MAX_ERROR_BACKOFF = 300.0
"""Longest pause between polls while the API keeps refusing them."""


class SettlementSource:
    """One watcher's settlement change source; it is its own ``feed`` (the attributes the watch loop reads).

    :param connection: The loop's shared connection (acquired; released by :meth:`close`).
    :param conn_id: Its Airflow connection id.
    :param enterprise_id: The client's enterprise.
    :param query: The watcher's statuses and partners.
    :param interval: Seconds between polls.
    :param since: Server time (epoch s) from which every change is wanted; ``None``: from the first poll's.
    :param clock: Monotonic clock (tests).
    :param sleep: ``asyncio.sleep`` (tests).
    """

    def __init__(
        self,
        connection: SharedConnection,
        conn_id: str,
        enterprise_id: str,
        query: SettlementQuery,
        interval: float,
        since: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.feed = self
        self.connection = connection
        self.conn_id = conn_id
        self.enterprise_id = enterprise_id
        self.query = query
        self.interval = interval
        self.overlap = float(connection.settings.feed_overlap)
        self.page_size = max(1, min(int(connection.settings.feed_page_size), MAX_PAGE_SIZE))
        self.batch_size = connection.batch_size
        self.floor = None if since is None else since - self.overlap
        self._other_statuses = frozenset(SETTLEMENT_STATUSES) - frozenset(query.statuses)
        self.closed = False
        self._clock = clock
        self._sleep = sleep
        self._watermark = since
        """Server time up to which the transfers read has seen every change."""
        self._scans: list[float] = [] if since is None else [since]
        """Server times at which the last two complete settlement-list reads started (``since`` standing in
        for the reads of the run that stored it)."""
        self._vouched = since
        self._scanned_at = -float("inf")
        self._next_poll = clock()
        self._errors = 0
        self._releasing: asyncio.Task[None] | None = None
        self._task: asyncio.Future[None] | None = None
        self._queue: asyncio.Queue[FeedBatch | None] = asyncio.Queue()
        self._failure: BaseException | None = None
        self.partners = PartnerWindows(connection.client, enterprise_id, clock)
        self.polls = 0
        self.requests = 0
        """Requests sent (transfers, settlements by id, settlement list, partners)."""

    def __repr__(self) -> str:
        return f"SettlementSource({self.conn_id}/{self.enterprise_id} {self.query.describe()})"

    def __aiter__(self) -> SettlementSource:
        return self

    async def __anext__(self) -> FeedBatch:
        if self.closed:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        # Cancel-safe: the watch loop gives up waiting after a heartbeat's time; the poll goes on in its task.
        batch = await self._queue.get()
        if batch is None:
            raise RuntimeError(f"the settlement change source failed: {self._failure!r}")
        return batch

    async def _run(self) -> None:
        try:
            while not self.closed:
                delay = self._next_poll - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                self._queue.put_nowait(await self._next())
        except Exception as exc:  # a bug: the watch loop logs it and opens a fresh source
            self._failure = exc
            self._queue.put_nowait(None)

    async def _next(self) -> FeedBatch:
        try:
            batch = await self.poll()
        except OESError as exc:
            self._errors += 1
            pause = self.interval if is_transient(exc) else min(MAX_ERROR_BACKOFF, self.interval * 2**self._errors)
            self._next_poll = self._clock() + pause
            return FeedBatch(error=exc, final=True)
        self._errors = 0
        self._next_poll = self._clock() + self.interval
        return batch

    async def _page(self, route: Any, filters: dict[str, Any], page_number: int, page_size: int) -> Any:
        self.requests += 1
        return await self.connection.client.list_route_page(
            route, self.enterprise_id, filters, page_number=page_number, page_size=page_size
        )

    async def poll(self) -> FeedBatch:
        """One poll: a final batch with the settlements that changed (and, when due, the whole list's)."""
        self.polls += 1
        if self._watermark is None:
            # First start: learn the server's "now"; nothing older is wanted.
            page = await self._page(TRANSFERS, {}, 0, 1)
            if page.server_time is None:
                raise OESResponseError("the OES API sent no Date header: the settlement watcher cannot start")
            self._watermark = page.server_time
            self._scans = [page.server_time, page.server_time]
            self._vouched = page.server_time
            self._scanned_at = self._clock()
            return FeedBatch(final=True, resume_from=page.server_time, polled_at=page.server_time, pages=1)
        filters = {
            **self.query.filters(),
            # No status filter here: a settlement leaving the watched statuses while pages are read would shift
            # the rows after it up a page, unread. Without one, rows only ever enter the list (updatedAt grows).
            "settlement_updated_on_or_after": format_timestamp(self._watermark - self.overlap),
            "sort_field": "updatedAt",
            "sort_direction": "DESC",  # a change while paging moves rows to page 0: read twice, never skipped
        }
        ids: dict[str, None] = {}
        polled_at: float | None = None
        page_number = 0
        while True:
            page = await self._page(TRANSFERS, filters, page_number, self.page_size)
            polled_at = page.server_time if polled_at is None else polled_at
            for transfer in page.records:
                if not isinstance(transfer, dict) or transfer.get("settlementStatus") in self._other_statuses:
                    continue  # its settlement is (now) in a status not watched: no read by id for it
                settlement_id = transfer.get("settlementId")
                if isinstance(settlement_id, str) and UUID.fullmatch(settlement_id):
                    ids[settlement_id.lower()] = None
            if len(page.records) < self.page_size:
                break
            page_number += 1
        if polled_at is None:
            raise OESResponseError("the OES API sent no Date header: the settlement watcher cannot vouch for a poll")
        records = await self._by_id(list(ids))
        pages = page_number + 1
        if self._clock() - self._scanned_at >= SCAN_SECONDS:
            records.extend(await self._scan())
        self._watermark = polled_at
        rows = self._rows(records, self._vouched)  # the partners' windows are read only for these
        annotated = await self._annotate([row.record for row in rows])
        rows = [FeedRow(row.id, row.updated_at, record) for row, record in zip(rows, annotated, strict=True)]
        # Vouched up to the older of this transfers read and the scan before the last one (a row that one scan
        # skipped, paging an unsorted list while others left it, is read by the next one).
        resume_from = self._vouched = min(polled_at, self._scans[0])
        return FeedBatch(tuple(rows), final=True, resume_from=resume_from, polled_at=polled_at, pages=pages)

    async def _by_id(self, ids: list[str]) -> list[Any]:
        records: list[Any] = []
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            filters = {**self.query.filters(), "settlement_ids": batch, "statuses": list(self.query.statuses)}
            page = await self._page(SETTLEMENTS, filters, 0, min(MAX_PAGE_SIZE, len(batch)))
            asked = set(batch)
            for record in page.records:
                record_id = record.get("id") if isinstance(record, dict) else None
                if isinstance(record_id, str) and record_id.lower() in asked:
                    records.append(record)
                else:  # never emit a settlement the API was not asked about (a wrong id could say "completed")
                    log.error("%r: the settlements read by id answered a record not asked for: %.200r", self, record)
        return records

    async def _scan(self) -> list[Any]:
        """Every settlement in the watched statuses (and partners): the list has no date filter nor sort."""
        filters = {**self.query.filters(), "statuses": list(self.query.statuses)}
        records: list[Any] = []
        started: float | None = None
        page_number = 0
        while True:
            page = await self._page(SETTLEMENTS, filters, page_number, self.page_size)
            started = page.server_time if started is None else started
            records.extend(page.records)
            if len(page.records) < self.page_size:
                break
            page_number += 1
        if started is None:
            raise OESResponseError("the OES API sent no Date header: the settlement watcher cannot vouch for a scan")
        self._scans = [*self._scans, started][-2:]
        self._scanned_at = self._clock()
        return records

    async def _annotate(self, records: list[Any]) -> list[Any]:
        before = self.partners.requests
        annotated = await self.partners.annotate(records, self.enterprise_id)
        self.requests += self.partners.requests - before
        return annotated

    def _rows(self, records: list[Any], vouched: float | None) -> list[FeedRow]:
        """Feed rows, newest first, without repeats or rows the window would drop anyway (far below its floor)."""
        lowest = None if vouched is None else vouched - self.overlap - KEEP_BELOW_FLOOR
        rows: dict[tuple[str, float, Any], FeedRow] = {}
        for record in records:
            record_id = record.get("id") if isinstance(record, dict) else None
            updated = parse_timestamp(record.get("updatedAt")) if isinstance(record, dict) else None
            if not isinstance(record_id, str) or not record_id or updated is None:
                log.error("%r: skipping a settlement record without a usable id or updatedAt: %.200r", self, record)
                continue
            row = FeedRow(record_id, updated, record)
            if lowest is None or updated >= lowest:
                rows[(record_id.lower(), updated, row.status)] = row
        return sorted(rows.values(), key=lambda r: -r.updated_at)

    def unsubscribe(self, subscription: Any) -> None:
        """The source is its own subscription: nothing to do."""

    def close(self) -> None:
        """Stop polling and give the shared connection back (idempotent; synchronous)."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        from airflow_provider_oes.triggers._shared import connections

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop (a generator closed after its loop): nothing left to release on
            return
        self._releasing = loop.create_task(connections.release(self.conn_id, self.connection))


async def open_settlement_subscription(watcher: Any) -> SettlementSource:
    """Open a settlement change source for the watcher (its trigger's connection, enterprise and filters)."""
    from airflow_provider_oes.triggers._shared import connections

    trigger = watcher.trigger
    connection = await connections.acquire(trigger.oes_conn_id)
    try:
        since = watcher.since(float(connection.settings.feed_overlap))
        return SettlementSource(
            connection, trigger.oes_conn_id, trigger.enterprise_id, trigger.query, trigger.poll_interval, since
        )
    except BaseException:
        await connections.release(trigger.oes_conn_id, connection)
        raise
