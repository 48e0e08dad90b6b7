"""The change feed's safety net: re-check every waiting allocation by id, one batch per poll, now and then."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._time import parse_timestamp
from airflow_provider_oes.models import is_terminal

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._feed import ChangeFeed
    from airflow_provider_oes.triggers._polling.checks import IdChecker
    from airflow_provider_oes.triggers._polling.resource import PollReporter
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")


class Reconciler:
    """Starts a pass every ``interval`` seconds and checks one batch of it per poll.

    :param sink: The poller.
    :param checker: The id checks.
    :param metrics: Where a find is counted (``oes.reconciliation.finds``).
    :param interval: Seconds between passes (the connection's ``reconcile_interval``).
    :param batch_size: Ids per list request.
    """

    def __init__(
        self,
        sink: ResultSink[Allocation],
        checker: IdChecker[Allocation],
        metrics: PollReporter,
        interval: float,
        batch_size: int,
    ) -> None:
        self.sink = sink
        self.checker = checker
        self.metrics = metrics
        self.interval = interval
        self.batch_size = batch_size
        self._queue: list[str] = []
        self._next = asyncio.get_running_loop().time() + interval
        self.requests = 0
        """List requests sent."""
        self.passes = 0
        """Passes started."""
        self.missed_by_feed: list[str] = []
        """Allocations found final although the feed should have seen them."""

    async def step(self, feed: ChangeFeed, unvouched: dict[str, None]) -> None:
        """One batch of the current pass (starting a new one when due)."""
        waiters = self.sink.waiters
        loop = asyncio.get_running_loop()
        if not self._queue:
            if loop.time() < self._next:
                return
            self._queue = list(waiters)
            self._queue.reverse()  # popped from the end: oldest waiters first
            self._next = loop.time() + self.interval
            self.passes += 1
        batch: list[str] = []
        while self._queue and len(batch) < self.batch_size:
            allocation_id = self._queue.pop()
            if allocation_id in waiters:
                batch.append(allocation_id)
        if not batch:
            return
        # What the feed claims to have seen: rows stamped before its last poll's server time minus the overlap.
        claimed = None if feed.watermark is None else feed.watermark - feed.overlap
        vouched = {i.lower() for i in batch if i not in unvouched}
        self.requests += 1
        await self.checker.check_batch(
            batch, inspect=lambda records: self._find_missed(feed, records, claimed, vouched)
        )

    def _find_missed(self, feed: ChangeFeed, records: list[Any], claimed: float | None, vouched: set[str]) -> None:
        """Log every final record the feed should have delivered already (it never should happen)."""
        if claimed is None:
            return
        for record in records:
            if not isinstance(record, dict) or not is_terminal(str(record.get("status"))):
                continue
            record_id, updated = record.get("id"), parse_timestamp(record.get("updatedAt"))
            if not isinstance(record_id, str) or record_id.lower() not in vouched:
                continue
            if updated is None or updated >= claimed:
                continue  # changed after the feed's last poll began: the feed would have seen it next
            self.missed_by_feed.append(record_id)
            self.metrics.reconciliation_finds(1)
            log.error(
                "OES poller %r/%r: the reconciliation found allocation %s %s (updatedAt %s), which the change "
                "feed should have seen and did not. The API may not keep its sort or filter promises, or commit "
                "lag plus clock skew exceeds the feed overlap (%g s). The trigger fires now.",
                self.sink.key[0],
                self.sink.enterprise_id,
                record_id,
                record.get("status"),
                record.get("updatedAt"),
                feed.overlap,
            )
