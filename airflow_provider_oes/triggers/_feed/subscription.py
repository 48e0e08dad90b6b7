"""A subscriber's handle on a change feed: iterate it (queue mode) or pass a synchronous callback."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from airflow_provider_oes.triggers._feed.types import FeedBatch

if TYPE_CHECKING:
    from collections.abc import Callable


class FeedSource(Protocol):
    """What a subscription knows of its feed."""

    enterprise_id: str
    overlap: float

    @property
    def closed(self) -> bool: ...

    def unsubscribe(self, sub: Subscription) -> None: ...


class Subscription:
    """One subscriber's handle on a :class:`ChangeFeed`. Iterate it (queue mode) or pass a callback.

    :param feed: The feed.
    :param on_batch: Synchronous callback for each batch; ``None`` queues batches for ``async for``.
    :param interval: Seconds between polls this subscriber wants (the feed uses the smallest).
    :param floor: Rows with ``updatedAt`` below this (epoch seconds) are not handed to it; ``None``: no bound.
    """

    def __init__(
        self,
        feed: FeedSource,
        on_batch: Callable[[FeedBatch], None] | None,
        interval: float,
        floor: float | None,
    ) -> None:
        self.feed = feed
        self.interval = interval
        self.floor = floor
        self._on_batch = on_batch
        self._queue: asyncio.Queue[FeedBatch] | None = asyncio.Queue() if on_batch is None else None
        self.closed = False
        self.floor_pending = False
        """True until the feed sets the bound of a ``since=None`` subscription (at its next cutoff)."""
        self.looking_back = False
        """True while the feed pages back for this subscription: its batches carry no ``resume_from`` until
        then (a subscriber must not move past rows it has not received)."""
        self.lookback_done = asyncio.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feed={self.feed!r}, interval={self.interval!r}, floor={self.floor!r})"

    def hand(self, batch: FeedBatch) -> None:
        """Deliver ``batch`` (its rows below this subscription's floor left out); nothing once closed."""
        if self.closed:
            return
        if self.looking_back and batch.resume_from is not None:
            batch = replace(batch, resume_from=None)
        if self.floor is not None and batch.rows:
            rows = tuple(row for row in batch.rows if row.updated_at >= self.floor)
            if len(rows) != len(batch.rows):
                batch = FeedBatch(
                    rows, batch.final, batch.resume_from, batch.polled_at, batch.pages, batch.error, batch.replay
                )
        if self._on_batch is not None:
            self._on_batch(batch)
        elif self._queue is not None:
            self._queue.put_nowait(batch)

    def hand_lookback(self, batch: FeedBatch, done: bool) -> None:
        """Deliver a batch of the subscription's own look-back; ``done`` on its last one."""
        if done:
            self.looking_back = False
            self.lookback_done.set()
        self.hand(batch)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> FeedBatch:
        if self._queue is None:
            raise TypeError("this subscription delivers to its callback; it cannot be iterated")
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        return await self._queue.get()

    def close(self) -> None:
        """Leave the feed (idempotent). Synchronous, so it also works in a cancelled coroutine's ``finally``."""
        if not self.closed:
            self.closed = True
            self.feed.unsubscribe(self)
