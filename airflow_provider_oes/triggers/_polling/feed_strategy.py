"""The default strategy: wake waiting triggers from the enterprise's change feed (``docs/internals/poller.rst``).

Waiters the feed cannot vouch for are checked by id after the next feed poll; after a restart the feed may
page back instead (:mod:`.backfill`); a reconciliation re-checks everyone now and then (:mod:`.reconcile`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from airflow_provider_oes._api import parse_allocation_record
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError
from airflow_provider_oes.triggers._feed import ALL, is_unsupported, open_feed
from airflow_provider_oes.triggers._polling.backfill import BackfillPlan
from airflow_provider_oes.triggers._polling.reconcile import Reconciler
from airflow_provider_oes.triggers._polling.strategy import FEED, ID_BATCHES, Fallback
from airflow_provider_oes.triggers._shared.connections import CONCURRENCY
from airflow_provider_oes.triggers._shared.waiters import bounded, each_waiter, latest_check, smallest_interval

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._feed import ChangeFeed, FeedBatch, FeedRow, Subscription
    from airflow_provider_oes.triggers._polling.checks import IdChecker
    from airflow_provider_oes.triggers._polling.resource import PollReporter
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")

INTERVAL_REFRESH = 60.0
"""Seconds between recomputing the smallest poll interval over all waiters."""
MAX_DEFERRED_POLLS = 3
"""Polls the restart decision waits at most while unvouched triggers keep arriving."""


class FeedStrategy:
    """Runs the change-feed strategy for one poller.

    :param sink: The poller whose waiters it wakes.
    :param checker: The id checks for what the feed cannot vouch for.
    :param metrics: The poller's metrics (reconciliation finds).
    :param batch_size: Ids per list request.
    :param reconcile_interval: Seconds between reconciliation passes.
    """

    kind = FEED

    def __init__(
        self,
        sink: ResultSink[Allocation],
        checker: IdChecker[Allocation],
        metrics: PollReporter,
        *,
        batch_size: int,
        reconcile_interval: float,
    ) -> None:
        self.sink = sink
        self.checker = checker
        self.metrics = metrics
        self.batch_size = batch_size
        self.reconcile_interval = reconcile_interval
        self.feed: ChangeFeed | None = None
        self._sub: Subscription | None = None
        self._aliases: dict[str, set[str]] = {}
        """Waiting ids not in lower case, by their lower-case form (the API may spell an id either way)."""
        self.unvouched: dict[str, None] = {}
        """Allocation ids to check by id after the next feed poll (an ordered set)."""
        self._tick = asyncio.Event()
        self.fallback_reason: str | None = None
        self.backfill = BackfillPlan(sink, batch_size)
        self.reconciler: Reconciler | None = None
        self._feedable_before = 0
        self._interval_value: float | None = None
        self._interval_at = 0.0
        self._deferred_ticks = 0
        self.id_check_requests = 0
        """List requests sent to check unvouched ids."""

    @property
    def backfills(self) -> int:
        """Times the strategy chose to page the feed back instead of checking ids."""
        return self.backfill.count

    @property
    def reconcile_requests(self) -> int:
        """List requests sent by the reconciliation."""
        return 0 if self.reconciler is None else self.reconciler.requests

    @property
    def reconcile_passes(self) -> int:
        """Reconciliation passes started."""
        return 0 if self.reconciler is None else self.reconciler.passes

    @property
    def missed_by_feed(self) -> list[str]:
        """Allocations the reconciliation found final although the feed should have seen them."""
        return [] if self.reconciler is None else self.reconciler.missed_by_feed

    # ------------------------------------------------------------------ waiters

    def added(self, allocation_id: str, last_check: float | None) -> None:
        """A trigger started waiting (called by the poller, synchronously).

        :param allocation_id: The allocation id.
        :param last_check: Server time at which it was last seen not final, if known.
        """
        newest = self.sink.waiters.get(allocation_id)  # the poller puts the newest waiter first
        if newest is not None and self._interval_value is not None:
            self._interval_value = min(self._interval_value, newest.poll_interval)
        lower = allocation_id.lower()
        if lower != allocation_id:  # rare: kept apart so that 100,000 waiters cost no extra set each
            self._aliases.setdefault(lower, set()).add(allocation_id)
        feed = self.feed
        if feed is not None and feed.vouches_for(last_check):
            row = feed.lookup(allocation_id)
            if row is not None:
                self._row(row)
        else:
            self.unvouched[allocation_id] = None

    def _row(self, row: FeedRow) -> None:
        sink = self.sink
        lower = row.id.lower()
        for allocation_id in (lower, *self._aliases.get(lower, ())):
            if allocation_id not in sink.waiters:
                continue
            try:
                allocation = parse_allocation_record(
                    row.record, allocation_id=allocation_id, enterprise_id=sink.enterprise_id
                )
            except OESError as exc:
                # A record the feed cannot use: let the id check decide (it reports a lasting problem itself).
                log.warning(
                    "The change feed's record of allocation %s is not usable, checking it by id: %s", allocation_id, exc
                )
                self.unvouched[allocation_id] = None
                continue
            sink.observe(allocation_id, allocation)

    def _forget_finished(self) -> None:
        waiters = self.sink.waiters
        for lower in [k for k, ids in self._aliases.items() if not any(i in waiters for i in ids)]:
            del self._aliases[lower]

    # ------------------------------------------------------------------ feed

    def _on_batch(self, batch: FeedBatch) -> None:
        if batch.error is not None:
            if not is_transient(batch.error) and self.fallback_reason is None:
                # Unusable list endpoint or no sort: the server does not serve the feed. Any other permanent
                # answer (401, 403, a body that is not a list): the id checks tell each trigger what is wrong.
                kind = "does not serve the change feed" if is_unsupported(batch.error) else "refused the change feed"
                self.fallback_reason = f"the API {kind}: {batch.error}"
                self._tick.set()
            return
        for row in batch.rows:
            self._row(row)
        if batch.final:
            self._tick.set()

    def _interval(self) -> float:
        # The smallest poll interval of the waiters: a full pass over a large fleet is not free, so it is
        # refreshed once a minute (and whenever a new waiter asks for a shorter one, in added()).
        now = time.monotonic()
        if self._interval_value is None or now - self._interval_at > INTERVAL_REFRESH:
            self._interval_value = smallest_interval(self.sink.waiters)
            self._interval_at = now
        return self._interval_value

    async def run(self) -> Fallback | None:
        """Wake waiters from the feed until none is left; a :class:`Fallback` to id batches if it cannot."""
        sink = self.sink
        feed = self.feed = await open_feed(sink.key[0], sink.enterprise_id)
        # Over a copy of the keys only (a shared feed may wake, and so remove, a waiter at once).
        for allocation_id in list(sink.waiters):
            waiters = sink.waiters.get(allocation_id)
            if waiters is not None:
                self.added(allocation_id, latest_check(waiters))
        self._sub = feed.subscribe(self._on_batch, interval=self._interval(), since=ALL)
        self.reconciler = Reconciler(sink, self.checker, self.metrics, self.reconcile_interval, self.batch_size)
        try:
            while sink.waiters:
                await self._tick.wait()
                self._tick.clear()
                if self.fallback_reason is not None:
                    return Fallback(ID_BATCHES, self.fallback_reason)
                if not sink.waiters:
                    break
                self._sub.interval = self._interval()
                await self._after_poll(feed)
                self._forget_finished()
                sink.polled()
        finally:
            self._sub.close()
        return None

    # ------------------------------------------------------------------ after each complete poll

    async def _after_poll(self, feed: ChangeFeed) -> None:
        waiting = self.sink.waiters
        for allocation_id in self.backfill.settle(feed, self.unvouched):
            row = feed.lookup(allocation_id)
            if row is not None:
                self._row(row)
        for allocation_id in list(self.unvouched):
            waiters = waiting.get(allocation_id)
            if waiters is None:
                del self.unvouched[allocation_id]
            elif feed.vouches_for(latest_check(waiters)):
                del self.unvouched[allocation_id]
                row = feed.lookup(allocation_id)
                if row is not None:
                    self._row(row)
        feedable = sum(1 for i in self.unvouched if latest_check(waiting[i]) is not None)
        arriving = feedable > self._feedable_before and self._deferred_ticks < MAX_DEFERRED_POLLS
        self._feedable_before = feedable
        if arriving:
            # Triggers are still arriving (a triggerer loads its triggers in chunks): decide for all of them
            # together at the next poll, so paging back is weighed against the id batches of the whole fleet.
            self._deferred_ticks += 1
        else:
            self._deferred_ticks = 0
            if self.unvouched and self.backfill.members is None:
                self.backfill.choose(feed, self.unvouched)
        target = self.backfill.target
        if arriving:
            ids = [i for i in self.unvouched if latest_check(waiting[i]) is None]
        elif target is not None:
            # A backfill is on its way: check by id only what it cannot cover.
            ids = [
                i
                for i in self.unvouched
                if (check := latest_check(waiting[i])) is None or check - feed.overlap < target
            ]
        else:
            ids = list(self.unvouched)
        if ids:
            size = self.batch_size
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            await bounded(batches, self._check_unvouched, CONCURRENCY)
        assert self.reconciler is not None
        await self.reconciler.step(feed, self.unvouched)

    async def _check_unvouched(self, batch: list[str]) -> None:
        batch = [i for i in batch if i in self.sink.waiters and i in self.unvouched]
        if not batch:
            return
        self.id_check_requests += 1
        checked = await self.checker.check_batch(batch)
        feed = self.feed
        assert feed is not None
        for allocation_id, server_time in checked.items():
            waiters = self.sink.waiters.get(allocation_id)
            if waiters is None:
                self.unvouched.pop(allocation_id, None)
                continue
            for waiter in each_waiter(waiters):
                waiter.last_check = max(waiter.last_check or server_time, server_time)
            if feed.vouches_for(server_time):
                self.unvouched.pop(allocation_id, None)
        # What failed transiently (or came without a server time) stays unvouched: checked after the next poll.
