"""A subscription's own look-back: the rows from its ``since`` that the feed no longer (or never) held."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError
from airflow_provider_oes.triggers._feed.types import FeedBatch, FeedRow, row_from_record

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes._api import ListQuery
    from airflow_provider_oes.triggers._feed.subscription import Subscription
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._feed")

MAX_LOOKBACK_BACKOFF = 60.0
"""Longest pause between two tries of a failed look-back page."""


class LookBack:
    """Pages newest first from page 0 down to ``floor``; hands rows in ``[floor, bound)`` to one subscription.

    It runs in its own task beside the feed's polls (every page waits for the connection's rate limiter like
    any other request), so other subscribers are not held up. Rows shifted down by changes while it pages
    are read twice (harmless), never skipped.

    :param connection: The feed's shared connection.
    :param enterprise_id: The enterprise.
    :param query: The feed's page query (sorted by ``updatedAt``, newest first).
    :param page_size: Rows per page.
    :param sub: Who gets the rows.
    :param floor: The oldest ``updatedAt`` (epoch s) to hand.
    :param bound: Rows at or after this are the feed's own (held, replayed, or still to come).
    :param held: ``lookup`` of the feed (rows it holds were replayed already).
    """

    def __init__(
        self,
        connection: SharedConnection,
        enterprise_id: str,
        query: ListQuery,
        page_size: int,
        sub: Subscription,
        floor: float,
        bound: float,
        held: Callable[[str], FeedRow | None],
    ) -> None:
        self.connection = connection
        self.enterprise_id = enterprise_id
        self.query = query
        self.page_size = page_size
        self.sub = sub
        self.floor = floor
        self.bound = bound
        self._held = held
        self.pages = 0
        self.rows = 0

    async def run(self) -> None:
        """Page back; never raises (a failure is retried with backoff while the subscription is open)."""
        sub = self.sub
        sub.looking_back = True
        log.info(
            "OES change feed %r: paging back for a subscription from %.3f to %.3f (the feed holds the rest)",
            self.enterprise_id,
            self.floor,
            self.bound,
        )
        page_number, failures = 0, 0
        try:
            while not sub.closed:
                try:
                    page = await self.connection.client.list_allocations_page(
                        self.enterprise_id,
                        query=self.query,
                        page_number=page_number,
                        page_size=self.page_size,
                        kind="feed_page",
                    )
                except OESError as exc:
                    failures += 1
                    delay = min(MAX_LOOKBACK_BACKOFF, 2.0**failures)
                    log.log(
                        logging.WARNING if is_transient(exc) else logging.ERROR,
                        "OES change feed %r: a look-back page failed (%s); trying again in %.0f s",
                        self.enterprise_id,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                self.pages += 1
                page_number += 1
                rows, oldest = self._rows(page.records)
                self.rows += len(rows)
                done = len(page.records) < self.page_size or (oldest is not None and oldest < self.floor)
                if rows or done:
                    sub.hand_lookback(FeedBatch(rows, final=True, polled_at=page.server_time, pages=self.pages), done)
                if done:
                    log.info(
                        "OES change feed %r: look-back done: %d row(s) in %d page(s)",
                        self.enterprise_id,
                        self.rows,
                        self.pages,
                    )
                    return
        finally:
            sub.looking_back = False

    def _rows(self, records: list[Any]) -> tuple[tuple[FeedRow, ...], float | None]:
        rows: list[FeedRow] = []
        oldest: float | None = None
        for record in records:
            row = row_from_record(record)
            if row is None:
                continue
            oldest = row.updated_at if oldest is None else min(oldest, row.updated_at)
            if not (self.floor <= row.updated_at < self.bound):
                continue
            held = self._held(row.id)
            if held is not None and held.updated_at == row.updated_at and held.status == row.status:
                continue  # replayed from what the feed holds
            rows.append(row)
        return tuple(rows), oldest
