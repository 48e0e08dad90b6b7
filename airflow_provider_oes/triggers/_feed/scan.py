"""One poll of a change feed: page newest first down to the cutoff (and any backfill), hand out new rows."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError
from airflow_provider_oes.triggers._feed.types import (
    SORT_DIRECTION,
    SORT_FIELD,
    FeedBatch,
    FeedOrderError,
    FeedRow,
    row_from_record,
)

if TYPE_CHECKING:
    from airflow_provider_oes._api import ListQuery
    from airflow_provider_oes.triggers._feed.subscription import Subscription
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._feed")


class PageScan:
    """The paging half of :class:`~airflow_provider_oes.triggers._feed.feed.ChangeFeed` (its state lives there)."""

    conn_id: str
    enterprise_id: str
    query: ListQuery
    connection: SharedConnection
    overlap: float
    page_size: int
    retention: float
    watermark: float | None
    covered_from: float | None
    pages: int
    polls: int
    late_rows: int
    max_lateness: float
    last_error: OESError | None
    _held: dict[str, FeedRow]
    _subs: list[Subscription]
    _backfill_to: float | None
    _backfill_pages: int | None
    _logged_error: str | None
    _page_query: ListQuery

    @property
    def horizon(self) -> float | None:
        """Rows with ``updatedAt`` below this are no longer held (``None`` before the first poll)."""
        return None if self.watermark is None else self.watermark - self.retention

    def _hand_all(self, batch: FeedBatch) -> None:
        for sub in list(self._subs):
            sub.hand(batch)

    async def _poll(self) -> OESError | None:
        """One poll: page down to the cutoff (and any backfill); hand new rows out page by page."""
        client = self.connection.client
        previous_watermark = self.watermark
        cutoff = None if previous_watermark is None else previous_watermark - self.overlap
        backfill_to, backfill_budget = self._backfill_to, self._backfill_pages
        horizon = self.horizon
        first_date: float | None = None
        newest: float | None = None
        page_number = 0
        beyond_cutoff = 0
        reached: float | None = None
        ended = False  # the list ran out (short page)
        while True:
            try:
                page = await client.list_allocations_page(
                    self.enterprise_id,
                    query=self._page_query,
                    page_number=page_number,
                    page_size=self.page_size,
                    kind="feed_page",
                )
            except OESError as exc:
                self.pages += 1
                return self._failed(exc)
            self.pages += 1
            if page_number == 0:
                first_date = page.server_time
            fresh: list[FeedRow] = []
            oldest_on_page: float | None = None
            # Order is checked within a page only: across pages, rows that changes shifted down repeat.
            previous_ts: float | None = None
            for record in page.records:
                row = row_from_record(record)
                if row is None:
                    continue  # no usable id or updatedAt: it cannot be placed; the poller's id checks cover it
                if previous_ts is not None and row.updated_at > previous_ts + 1e-6:
                    return self._failed(
                        FeedOrderError(
                            f"the OES API did not sort the allocations of enterprise {self.enterprise_id!r} by "
                            f"updatedAt newest first (sortField={SORT_FIELD}&sortDirection={SORT_DIRECTION}); "
                            "the change feed cannot rely on it",
                            enterprise_id=self.enterprise_id,
                        )
                    )
                previous_ts = oldest_on_page = row.updated_at
                if newest is None:
                    newest = row.updated_at
                if self._take(row, horizon, backfill_to):
                    fresh.append(row)
                    if previous_watermark is not None and row.updated_at < previous_watermark:
                        self._late(row, previous_watermark)
            if cutoff is None:
                # First poll: reach back `overlap` behind the server's now (or its newest row, without a Date).
                anchor = first_date if first_date is not None else newest
                cutoff = None if anchor is None else anchor - self.overlap
                if horizon is None and anchor is not None:
                    horizon = anchor - self.retention
            for sub in self._subs:
                if sub.floor_pending:  # "from now" subscriptions start at this poll's cutoff
                    sub.floor, sub.floor_pending = cutoff, False
            page_number += 1
            short = len(page.records) < self.page_size
            past_cutoff = cutoff is None or (oldest_on_page is not None and oldest_on_page < cutoff)
            if past_cutoff and not short:
                beyond_cutoff += 1
            done = short
            if not done and past_cutoff:
                if backfill_to is None or (oldest_on_page is not None and oldest_on_page < backfill_to):
                    done = True
                elif backfill_budget is not None and beyond_cutoff > backfill_budget:
                    done = True
                    reached = oldest_on_page
            if short:
                ended = True
            if done:
                self._complete(first_date, newest, cutoff, backfill_to, reached, ended)
                self._hand_all(
                    FeedBatch(
                        tuple(fresh),
                        final=True,
                        resume_from=self.watermark,
                        polled_at=first_date,
                        pages=page_number,
                    )
                )
                return None
            if fresh:
                self._hand_all(FeedBatch(tuple(fresh), polled_at=first_date, pages=page_number))

    def _take(self, row: FeedRow, horizon: float | None, backfill_to: float | None) -> bool:
        """Hold the row if it is new; True when it should be handed out."""
        key = row.id.lower()
        held = self._held.get(key)
        if held is not None and (
            held.updated_at > row.updated_at or (held.updated_at == row.updated_at and held.status == row.status)
        ):
            return False  # seen (a status change without a new updatedAt is still a change)
        if horizon is not None and row.updated_at < horizon and (backfill_to is None or row.updated_at < backfill_to):
            return False  # older than what the feed holds: handed out long ago (or to be caught by a backfill)
        self._held[key] = row.compact()
        return True

    def _late(self, row: FeedRow, previous_watermark: float) -> None:
        # The row was not visible when the previous poll's first page was served, although its updatedAt lies
        # before that page's Date: commit lag plus clock skew of at least `lateness`. The overlap covers it up to
        # `overlap` seconds; warn well before that runs out.
        lateness = previous_watermark - row.updated_at
        self.late_rows += 1
        if lateness > self.max_lateness:
            self.max_lateness = lateness
            log.log(
                logging.WARNING if lateness > self.overlap / 2 else logging.INFO,
                "OES change feed %r/%r: allocation %s became visible with updatedAt %.1f s before the previous "
                "poll's server time (overlap %g s): commit lag plus clock skew. Beyond the overlap a change could "
                "be missed by the polls (a deferred sensor's reconciliation still catches it; an asset watcher's "
                "reconciliation only within 600 s below its floor): raise the feed overlap if this comes close to it.",
                self.conn_id,
                self.enterprise_id,
                row.id,
                lateness,
                self.overlap,
            )

    def _complete(
        self,
        first_date: float | None,
        newest: float | None,
        cutoff: float | None,
        backfill_to: float | None,
        reached: float | None,
        ended: bool,
    ) -> None:
        self.polls += 1
        self.last_error = None
        self._logged_error = None
        anchor = first_date if first_date is not None else newest
        if anchor is not None and (self.watermark is None or anchor > self.watermark):
            self.watermark = anchor
        # Pruned first: this poll's reach (a backfill's, for the poller to settle) stands until the next poll.
        self._prune()
        covered: float | None
        if ended:
            covered = -math.inf
        elif reached is not None:
            covered = reached + 1e-6  # rows at exactly `reached` may continue on the next page
        else:
            covered = cutoff if backfill_to is None or cutoff is None else min(cutoff, backfill_to)
        if covered is not None and (self.covered_from is None or covered < self.covered_from):
            self.covered_from = covered
        if backfill_to is not None:
            self._backfill_to = None
            self._backfill_pages = None

    def _prune(self) -> None:
        horizon = self.horizon
        if horizon is None:
            return
        if self.covered_from is not None and self.covered_from < horizon:
            # What it no longer holds it cannot replay: a subscription from further back must page back for it.
            self.covered_from = horizon
        # A full pass: simpler than keeping rows taken out of order (late rows, backfills) sorted, and it
        # runs once per poll.
        self._held = {key: row for key, row in self._held.items() if row.updated_at >= horizon}

    def _failed(self, exc: OESError) -> OESError:
        self.last_error = exc
        text = f"{type(exc).__name__}: {exc}"
        if text != self._logged_error:  # once per kind of failure in a row, not once per interval
            self._logged_error = text
            log.log(
                logging.WARNING if is_transient(exc) else logging.ERROR,
                "OES change feed %r/%r (%s): poll failed, will try again: %s",
                self.conn_id,
                self.enterprise_id,
                self.query.describe(),
                exc,
            )
        self._hand_all(FeedBatch(error=exc, final=True))
        return exc
