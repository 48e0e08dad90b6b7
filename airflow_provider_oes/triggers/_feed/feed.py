"""The change feed of an enterprise: newly final allocations, newest first, at a cost that follows changes.

One :class:`ChangeFeed` per ``(connection id, enterprise id, ListQuery)`` per event loop, shared by the poller's
feed strategy and the asset watchers. Design and rules: ``docs/internals/change-feed.rst``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from airflow_provider_oes._aio import wait_at_most
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError, OESInvalidRequestError, OESResponseError
from airflow_provider_oes.triggers._feed.lookback import LookBack
from airflow_provider_oes.triggers._feed.scan import PageScan
from airflow_provider_oes.triggers._feed.subscription import Subscription
from airflow_provider_oes.triggers._feed.types import (
    ALL,
    DEFAULT_OVERLAP,
    DEFAULT_PAGE_SIZE,
    DEFAULT_QUERY,
    DEFAULT_RETENTION,
    MAX_ERROR_BACKOFF,
    SORT_DIRECTION,
    SORT_FIELD,
    FeedBatch,
    FeedRow,
    newest_first,
)
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes._api import ListQuery
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._feed")

FeedKey = tuple[str, str, "ListQuery"]

_feeds: LoopLocal[dict[FeedKey, ChangeFeed]] = LoopLocal(dict)


def running_feeds() -> dict[FeedKey, ChangeFeed]:
    """The feeds of this event loop by key (for tests and logs)."""
    return _feeds.get()


def get_feed(conn_id: str, enterprise_id: str, query: ListQuery | None = None) -> ChangeFeed | None:
    """The running feed of this event loop for the key, if any (for tests and logs)."""
    return _feeds.get().get((conn_id, enterprise_id, (query or DEFAULT_QUERY).canonical()))


async def open_feed(conn_id: str, enterprise_id: str, query: ListQuery | None = None) -> ChangeFeed:
    """The loop's feed for a connection, enterprise and query; created (with the shared connection) on first use.

    The feed starts polling with its first subscription and stops when the last one closes.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param query: The list filters; default the final statuses of every allocation. Equal queries share a feed.
    :raises OESError: when the connection cannot be read.
    """
    key = (conn_id, enterprise_id, (query or DEFAULT_QUERY).canonical())
    feed = _feeds.get().get(key)
    if feed is not None and not feed.connection.client.is_closed:
        return feed
    connection = await connections.shared(conn_id)
    feeds = _feeds.get()
    feed = feeds.get(key)  # another coroutine may have created it while the connection was read
    if feed is None or feed.connection.client.is_closed:  # a feed opened but never subscribed outlives its client
        settings = connection.settings
        feed = feeds[key] = ChangeFeed(
            key, connection, overlap=float(settings.feed_overlap), page_size=int(settings.feed_page_size)
        )
    return feed


class ChangeFeed(PageScan):
    """Reads newly changed rows of one list query, newest first, down to the watermark minus the overlap.

    Build it with :func:`open_feed` (one per key per event loop).

    :param key: ``(conn_id, enterprise_id, query)``.
    :param connection: The loop's shared client and rate limiter of the connection.
    :param overlap: Seconds each poll reaches back behind the watermark (clock skew plus commit lag).
    :param page_size: Rows per page.
    :param retention: Seconds behind the watermark for which rows are held.
    """

    def __init__(
        self,
        key: FeedKey,
        connection: SharedConnection,
        *,
        overlap: float = DEFAULT_OVERLAP,
        page_size: int = DEFAULT_PAGE_SIZE,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        if not (math.isfinite(overlap) and overlap >= 0):
            raise OESInvalidRequestError(f"the feed overlap must be a number of seconds >= 0, got {overlap!r}")
        if page_size < 1:
            raise OESInvalidRequestError(f"the feed page size must be at least 1, got {page_size!r}")
        self.key = key
        self.conn_id, self.enterprise_id, self.query = key
        self.connection = connection
        self.overlap = overlap
        self.page_size = page_size
        self.retention = max(retention, overlap)
        self.watermark: float | None = None
        """Server time (epoch s) of the first page of the last complete poll: the next poll's cutoff is this
        minus ``overlap``."""
        self.covered_from: float | None = None
        """The feed has read every row with ``updatedAt`` at or after this (epoch s), continuously since.
        ``None`` before the first complete poll; ``-inf`` once it read the whole list."""
        self._held: dict[str, FeedRow] = {}
        self._released = False
        self._subs: list[Subscription] = []
        self._lookbacks: dict[Subscription, asyncio.Task[None]] = {}
        self._backfill_to: float | None = None
        self._backfill_pages: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._errors_in_row = 0
        self._logged_error: str | None = None
        self.polls = 0
        """Complete polls."""
        self.pages = 0
        """Pages requested (every request of the feed)."""
        self.late_rows = 0
        """Rows seen for the first time although their ``updatedAt`` lies before the previous poll's server time."""
        self.max_lateness = 0.0
        """The most seconds such a row's ``updatedAt`` lay before the previous poll's server time."""
        self.last_error: OESError | None = None
        self._page_query = replace(self.query, sort_field=SORT_FIELD, sort_direction=SORT_DIRECTION)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(conn_id={self.conn_id!r}, enterprise_id={self.enterprise_id!r}, "
            f"query={self.query.describe()!r}, subscriptions={len(self._subs)})"
        )

    # ------------------------------------------------------------------ subscriptions

    @property
    def closed(self) -> bool:
        """True once the feed stopped (its task ended, or its last subscriber left): its subscriptions get
        nothing more, and :func:`open_feed` hands out a new feed for the key."""
        return self._closed

    @property
    def backfill_pending(self) -> bool:
        """True while a requested backfill has not run yet."""
        return self._backfill_to is not None

    def subscribe(
        self,
        on_batch: Callable[[FeedBatch], None] | None = None,
        *,
        interval: float,
        since: float | None = None,
    ) -> Subscription:
        """Start receiving batches; starts the feed's task if needed.

        :param on_batch: Synchronous callback; ``None`` to iterate the subscription instead.
        :param interval: Seconds between polls this subscriber wants.
        :param since: Server time (epoch s): hand every row with ``updatedAt >= since - overlap``.
        """
        if self._closed:  # pragma: no cover - open_feed never hands out a closed feed
            raise RuntimeError("this change feed has stopped")
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise OESInvalidRequestError(f"the feed interval must be a positive number of seconds, got {interval!r}")
        if since is None:
            floor = None if self.watermark is None else self.watermark - self.overlap
        elif since == ALL:
            floor = None
        else:
            floor = since - self.overlap
        sub = Subscription(self, on_batch, float(interval), floor)
        sub.floor_pending = since is None and floor is None
        self._subs.append(sub)
        if since is not None and floor is not None:
            # What the feed holds comes at once; what lies further back than it has read comes from a backfill
            # (which hands out only rows the feed does not hold: the two never overlap).
            rows = tuple(sorted((r for r in self._held.values() if r.updated_at >= floor), key=newest_first))
            if rows:
                asyncio.get_running_loop().call_soon(sub.hand, FeedBatch(rows, replay=True))
            if self.covered_from is None or self.horizon is None:
                self.request_backfill(floor)  # the first poll is still to come: it reads back that far
            elif floor < (bound := max(self.covered_from, self.horizon)):
                self.look_back(sub, floor, bound)
        loop = asyncio.get_running_loop()
        if self._task is None:
            self.connection.retain()  # the connection's client stays open while the feed polls
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"oes-feed-{self.conn_id}-{self.enterprise_id}")
        return sub

    def look_back(self, sub: Subscription, floor: float, bound: float) -> None:
        """Page back for ``sub`` alone, in the background: rows in ``[floor, bound)`` the feed does not hold.

        Also a subscriber's reconciliation: rows committed later than the overlap allows (never read by the
        polls) are found. Nothing happens while ``sub`` already looks back.
        """
        if sub.closed or sub in self._lookbacks:
            return
        lookback = LookBack(
            self.connection, self.enterprise_id, self._page_query, self.page_size, sub, floor, bound, self.lookup
        )
        sub.looking_back = True
        task = asyncio.get_running_loop().create_task(lookback.run(), name=f"oes-feed-lookback-{self.enterprise_id}")
        self._lookbacks[sub] = task
        task.add_done_callback(lambda _t: self._lookbacks.pop(sub, None))

    def unsubscribe(self, sub: Subscription) -> None:
        """Take ``sub`` out (what :meth:`Subscription.close` calls); the last one stops the feed."""
        if sub in self._subs:
            self._subs.remove(sub)
        lookback = self._lookbacks.pop(sub, None)
        if lookback is not None:
            lookback.cancel()
        if not self._subs and not self._closed:
            # Nobody is listening: stop now, even mid-poll. Leave the registry at once so that a subscriber
            # arriving meanwhile starts a fresh feed instead of joining this one.
            self._detach()
            if self._task is not None:
                self._task.cancel()

    def vouches_for(self, last_check: float | None) -> bool:
        """True when every change after ``last_check`` (server time, epoch s) is, or will be, seen by this feed.

        :param last_check: When the allocation was last seen not final (server time); ``None``: never.
        """
        if last_check is None or self.covered_from is None or self.horizon is None or self._closed:
            return False
        return last_check - self.overlap >= max(self.covered_from, self.horizon)

    def held_since(self, moment: float) -> int:
        """How many held rows have ``updatedAt`` at or after ``moment`` (the change rate, for cost estimates)."""
        return sum(1 for row in self._held.values() if row.updated_at >= moment)

    def lookup(self, allocation_id: str) -> FeedRow | None:
        """The newest row the feed holds for an allocation id, if any.

        :param allocation_id: The id (compared case-insensitively).
        """
        return self._held.get(allocation_id.lower())

    def request_backfill(self, to: float, max_pages: int | None = None) -> None:
        """Read back to ``to`` (server time, epoch s) on the next poll, which starts at once.

        :param to: How far back to read.
        :param max_pages: Most pages to spend beyond the normal cutoff; ``None``: as many as needed.
        """
        if self.covered_from is not None and to >= self.covered_from:
            if self._wake is not None:
                self._wake.set()
            return
        self._backfill_to = to if self._backfill_to is None else min(self._backfill_to, to)
        if max_pages is not None:
            self._backfill_pages = max_pages if self._backfill_pages is None else max(self._backfill_pages, max_pages)
        else:
            self._backfill_pages = None
        if self._wake is not None:
            self._wake.set()

    def wake(self) -> None:
        """Poll now instead of at the end of the interval."""
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ polling

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        try:
            log.info(
                "OES change feed started for connection %r, enterprise %r (%s): pages of %d, overlap %g s",
                self.conn_id,
                self.enterprise_id,
                self.query.describe(),
                self.page_size,
                self.overlap,
            )
            while self._subs:
                started = loop.time()
                self._wake.clear()
                error = await self._poll()
                if not self._subs:
                    break
                interval = min(sub.interval for sub in self._subs)
                if error is None:
                    self._errors_in_row = 0
                    pause = interval
                elif is_transient(error):
                    pause = interval
                else:
                    # Permanent (401/403/400/404...): keep trying, slowly, for subscribers that cannot fall back.
                    self._errors_in_row += 1
                    pause = min(MAX_ERROR_BACKOFF, interval * 2 ** min(self._errors_in_row, 10))
                delay = started + pause - loop.time()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await wait_at_most(self._wake.wait(), delay)
        except Exception as exc:
            log.exception("The OES change feed for %r stopped unexpectedly", self.key)
            error = OESResponseError(f"the OES change feed for enterprise {self.enterprise_id!r} failed: {exc!r}")
            self._hand_all(FeedBatch(error=error, final=True))
        finally:
            self._detach()
            await self._release()

    def _detach(self) -> None:
        self._closed = True
        feeds = _feeds.peek()
        if feeds is not None and feeds.get(self.key) is self:
            del feeds[self.key]

    async def _release(self) -> None:
        if not self._released and self._task is not None:
            self._released = True
            await connections.release(self.conn_id, self.connection)
