"""The restart rule: page the feed back when that is cheaper than checking the waiting ids in batches."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from airflow_provider_oes.triggers._shared.waiters import latest_check

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._feed import ChangeFeed
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")


class BackfillPlan:
    """Decides, after the feed's first polls, whether to page back for the waiters it cannot vouch for yet.

    :param sink: The poller (its waiters and their ``last_check``).
    :param batch_size: Ids per list request (the cost to compare with).
    """

    def __init__(self, sink: ResultSink[Allocation], batch_size: int) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.members: set[str] | None = None
        """Who waited when the backfill was asked for (all rows it reads reach them); ``None``: none asked."""
        self.target: float | None = None
        """How far back the backfill reads (server time), while one is on its way."""
        self.exhausted = False
        self.count = 0
        """Times paging back was chosen over id batches."""

    def choose(self, feed: ChangeFeed, unvouched: dict[str, None]) -> bool:
        """Page back if cheaper than id batches for the ``unvouched`` waiters with a ``last_check``."""
        assert feed.covered_from is not None
        assert feed.watermark is not None
        waiters = self.sink.waiters
        checks = {i: latest_check(waiters[i]) for i in unvouched}
        feedable = {i: t for i, t in checks.items() if t is not None}
        if not feedable or self.exhausted:
            return False
        target = min(feedable.values()) - feed.overlap
        if target >= feed.covered_from:
            return False  # read already, but no longer held (beyond retention): the ids are cheaper
        id_cost = math.ceil(len(feedable) / self.batch_size)
        estimate = _pages_back_to(feed, target)
        log.info(
            "OES poller %r/%r: %d waiting allocations not covered by the change feed yet, oldest last check "
            "%.0f s before the feed's window: paging back about %d pages vs %d id batches",
            self.sink.key[0],
            self.sink.enterprise_id,
            len(checks),
            feed.covered_from - target,
            estimate,
            id_cost,
        )
        if estimate >= id_cost:
            return False
        self.count += 1
        self.members = set(feedable)
        self.target = target
        feed.request_backfill(target, max_pages=id_cost)
        return True

    def settle(self, feed: ChangeFeed, unvouched: dict[str, None]) -> list[str]:
        """After a backfill poll: take the members it reached back to out of ``unvouched``; return them."""
        members = self.members
        if members is None or feed.backfill_pending:
            return []  # none asked, or the backfill has not run yet
        target, self.members, self.target = self.target, None, None
        covered = feed.covered_from
        if covered is None or target is None or covered > target:
            # The budget ran out before the target: paging further would no longer be the cheaper way.
            self.exhausted = True
        reached: list[str] = []
        for allocation_id in members:
            waiters = self.sink.waiters.get(allocation_id)
            if waiters is None:
                unvouched.pop(allocation_id, None)
                continue
            last_check = latest_check(waiters)
            # Every row the backfill read reached this poller while it waited (the poller takes every row);
            # rows the feed handed out before this trigger registered are in what it holds.
            if covered is not None and last_check is not None and last_check - feed.overlap >= covered:
                unvouched.pop(allocation_id, None)
                reached.append(allocation_id)
        return reached


def _pages_back_to(feed: ChangeFeed, target: float) -> int:
    """Pages the feed would read to reach back to ``target``, at the change rate its window shows."""
    assert feed.watermark is not None
    assert feed.covered_from is not None
    window = feed.watermark - max(feed.covered_from, feed.horizon or feed.covered_from)
    held = feed.held_since(feed.watermark - window) if window > 0 else 0
    rate = held / window if window > 0 else 0.0
    return max(1, math.ceil(rate * (feed.covered_from - target) / feed.page_size))
