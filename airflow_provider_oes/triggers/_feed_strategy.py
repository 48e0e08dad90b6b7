"""The shared poller's default strategy: wake waiting triggers from the enterprise's change feed.

The poller of a ``(connection, enterprise)`` subscribes to the enterprise's
:class:`~airflow_provider_oes.triggers._feed.ChangeFeed` (statuses ``cleared,released``) and wakes every
waiting trigger whose allocation appears in it. Per poll interval that is one feed request at steady state,
whatever the number of waiting allocations. What the feed cannot vouch for is checked by id, in batches:

* **Every waiter is covered.** Each trigger carries ``last_check``: the server time (the ``Date`` of the
  sensor's GET) at which its allocation was last seen not final. A change after it has ``updatedAt >=
  last_check - overlap`` (see the feed's skew rule), so once the feed has read continuously since
  ``last_check - overlap`` (``ChangeFeed.vouches_for``) the feed alone is enough: a row it already holds wakes
  the trigger at once (``ChangeFeed.lookup``), later ones arrive with the next polls. A trigger without
  ``last_check`` (created by an older version, or started from the triggerer with no check at all), or with
  one the feed cannot vouch for, is *unvouched*: it is checked by id, in batches of ``batch_size``, after the
  next feed poll; the ``Date`` of that answer becomes its ``last_check``.
* **Restart rule.** A new triggerer starts a fresh feed, and its triggers arrive with ``last_check`` values
  from before. After the feed's first poll the strategy compares, for the unvouched waiters with a
  ``last_check``, the pages the feed would need to read back to their oldest ``last_check - overlap`` (the
  change rate the first poll saw times the time span, over the page size) with the id batches checking them
  would need, ``ceil(waiting / batch_size)``. If paging back is cheaper it pages back, spending at most as
  many pages as the id batches would have cost; whoever the pages reached is covered, the rest is checked
  by id. So a restart costs the cheaper of the two whenever the first poll's rate holds, and never more
  than the id batches plus as many pages. While unvouched triggers are still arriving (a triggerer loads
  them in chunks) the decision waits for them, at most ``MAX_DEFERRED_POLLS`` polls, so that it is taken
  once for the whole fleet; triggers without any ``last_check`` are checked by id at once.
* **Safety net.** Every ``reconcile_interval`` seconds (connection extra, default 600) a reconciliation
  starts that re-checks every waiting allocation by id, one batch per poll interval (so at steady state the
  poller sends at most the feed's page plus one batch per interval; at 100,000 waiting and batches of 200 a
  pass takes 500 intervals). A final allocation it finds whose ``updatedAt`` lies before what the feed had
  covered is logged as an error: the feed missed it (it never should against a server that keeps the spec).
* **Fallback.** If the server answers the feed's query with 400 or 404, or does not sort by ``updatedAt``,
  the strategy ends and the poller switches to id batches, logging once why. Any other permanent answer to
  the feed (401, 403, a body that is not a list) does the same, so that the id checks report to each
  waiting trigger what is wrong, exactly as the id strategy does. Transient failures are retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api import parse_allocation_record, parse_timestamp
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError
from airflow_provider_oes.models import is_terminal
from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers._feed import ALL, FeedBatch, FeedRow, is_unsupported, open_feed
from airflow_provider_oes.triggers._poller import LIST_REJECTED_STATUS_CODES as LIST_REJECTED_STATUS_CODES
from airflow_provider_oes.triggers._poller import _Waiter, each_waiter, smallest_interval

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.triggers._feed import ChangeFeed, Subscription
    from airflow_provider_oes.triggers._poller import AllocationPoller

log = logging.getLogger(__name__)

INTERVAL_REFRESH = 60.0
"""Seconds between recomputing the smallest poll interval over all waiters."""
MAX_DEFERRED_POLLS = 3
"""Polls the restart decision waits at most while unvouched triggers keep arriving."""


class FeedStrategy:
    """Runs the change-feed strategy for one :class:`~airflow_provider_oes.triggers._poller.AllocationPoller`.

    :param poller: The poller whose waiters it wakes.
    """

    def __init__(self, poller: AllocationPoller) -> None:
        self.poller = poller
        self.feed: ChangeFeed | None = None
        self._sub: Subscription | None = None
        self._aliases: dict[str, set[str]] = {}
        """Waiting ids not in lower case, by their lower-case form (the API may spell an id either way)."""
        self.unvouched: dict[str, None] = {}
        """Allocation ids to check by id after the next feed poll (an ordered set)."""
        self._tick = asyncio.Event()
        self.fallback_reason: str | None = None
        self._backfill_members: set[str] | None = None
        """Who waited when the backfill was asked for (all rows it reads reach them)."""
        self._backfill_target: float | None = None
        self._backfill_exhausted = False
        self._feedable_before = 0
        self._interval_value: float | None = None
        self._interval_at = 0.0
        self._deferred_ticks = 0
        self._reconcile_queue: list[str] = []
        self._next_reconcile: float | None = None
        self.id_check_requests = 0
        """List requests sent to check unvouched ids."""
        self.reconcile_requests = 0
        """List requests sent by the reconciliation."""
        self.reconcile_passes = 0
        """Reconciliation passes started."""
        self.missed_by_feed: list[str] = []
        """Allocations the reconciliation found final although the feed should have seen them."""
        self.backfills = 0
        """Times the strategy chose to page the feed back instead of checking ids."""
        self._list_rejected = False

    # ------------------------------------------------------------------ waiters

    def added(self, allocation_id: str, last_check: float | None) -> None:
        """A trigger started waiting (called by the poller, synchronously).

        :param allocation_id: The allocation id.
        :param last_check: Server time at which it was last seen not final, if known.
        """
        newest = self.poller.waiters.get(allocation_id)  # add() puts the newest waiter first
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
        poller = self.poller
        lower = row.id.lower()
        for allocation_id in (lower, *self._aliases.get(lower, ())):
            if allocation_id not in poller.waiters:
                continue
            try:
                allocation = parse_allocation_record(
                    row.record, allocation_id=allocation_id, enterprise_id=poller.enterprise_id
                )
            except OESError as exc:
                # A record the feed cannot use: let the id check decide (it reports a lasting problem itself).
                log.warning(
                    "The change feed's record of allocation %s is not usable, checking it by id: %s", allocation_id, exc
                )
                self.unvouched[allocation_id] = None
                continue
            poller._observe(allocation_id, allocation)

    def _forget_finished(self) -> None:
        waiters = self.poller.waiters
        for lower in [k for k, ids in self._aliases.items() if not any(i in waiters for i in ids)]:
            del self._aliases[lower]

    # ------------------------------------------------------------------ feed

    def _on_batch(self, batch: FeedBatch) -> None:
        if batch.error is not None:
            if not is_transient(batch.error) and self.fallback_reason is None:
                # 400/404 or no sort: the server does not serve the feed. Any other permanent answer (401, 403, a
                # body that is not a list): the id checks tell each waiting trigger what is wrong, as before.
                kind = "does not serve the change feed" if is_unsupported(batch.error) else "refused the change feed"
                self.fallback_reason = f"the API {kind}: {batch.error}"
                self._tick.set()
            return
        for row in batch.rows:
            self._row(row)
        if batch.final:
            self._tick.set()

    def _interval(self) -> float:
        # The smallest poll interval of the waiters; a full pass over 100,000 waiters costs ~10 ms, so it is
        # refreshed once a minute (and whenever a new waiter asks for a shorter one, in added()).
        now = time.monotonic()
        if self._interval_value is None or now - self._interval_at > INTERVAL_REFRESH:
            self._interval_value = smallest_interval(self.poller.waiters)
            self._interval_at = now
        return self._interval_value

    async def run(self) -> bool:
        """Wake waiters from the feed until none is left; True when the poller must fall back to id batches."""
        poller = self.poller
        loop = asyncio.get_running_loop()
        feed = self.feed = await open_feed(poller.key[0], poller.enterprise_id)
        # Over a copy of the keys only (a shared feed may wake, and so remove, a waiter at once): a list of
        # 100,000 (id, waiters) tuples would add ~7 MB to the triggerer's peak for one loop.
        for allocation_id in list(poller.waiters):
            waiters = poller.waiters.get(allocation_id)
            if waiters is not None:
                self.added(allocation_id, _latest_check(waiters))
        self._sub = feed.subscribe(self._on_batch, interval=self._interval(), since=ALL)
        self._next_reconcile = loop.time() + poller.connection.settings.reconcile_interval
        try:
            while poller.waiters:
                await self._tick.wait()
                self._tick.clear()
                if self.fallback_reason is not None:
                    log.warning(
                        "OES poller %r/%r: %s. Switching to id batches for this poller.",
                        poller.key[0],
                        poller.enterprise_id,
                        self.fallback_reason,
                    )
                    return True
                if not poller.waiters:
                    break
                self._sub.interval = self._interval()
                await self._after_poll()
                self._forget_finished()
                poller._flush_metrics(len(poller.waiters))
                _gc.after_poll()
        finally:
            self._sub.close()
        return False

    # ------------------------------------------------------------------ after each complete poll

    async def _after_poll(self) -> None:
        feed = self.feed
        assert feed is not None
        poller = self.poller
        self._settle_backfill()
        for allocation_id in list(self.unvouched):
            waiters = poller.waiters.get(allocation_id)
            if waiters is None:
                del self.unvouched[allocation_id]
            elif feed.vouches_for(_latest_check(waiters)):
                del self.unvouched[allocation_id]
                row = feed.lookup(allocation_id)
                if row is not None:
                    self._row(row)
        feedable = sum(1 for i in self.unvouched if _latest_check(poller.waiters[i]) is not None)
        arriving = feedable > self._feedable_before and self._deferred_ticks < MAX_DEFERRED_POLLS
        self._feedable_before = feedable
        if arriving:
            # Triggers are still arriving (a triggerer loads its triggers in chunks): decide for all of them
            # together at the next poll, so paging back is weighed against the id batches of the whole fleet.
            self._deferred_ticks += 1
        else:
            self._deferred_ticks = 0
            if self.unvouched and self._backfill_members is None:
                self._choose_backfill()
        target = self._backfill_target
        if arriving:
            ids = [i for i in self.unvouched if _latest_check(poller.waiters[i]) is None]
        elif target is not None:
            # A backfill is on its way: check by id only what it cannot cover.
            ids = [
                i
                for i in self.unvouched
                if (check := _latest_check(poller.waiters[i])) is None or check - feed.overlap < target
            ]
        else:
            ids = list(self.unvouched)
        if ids:
            size = poller.batch_size
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            from airflow_provider_oes.triggers._poller import CONCURRENCY, _bounded

            await _bounded(batches, self._check_unvouched, CONCURRENCY)
        await self._reconcile_step()

    def _choose_backfill(self) -> bool:
        """The restart rule: page the feed back when that is cheaper than id batches (module docstring)."""
        feed = self.feed
        assert feed is not None
        assert feed.covered_from is not None
        assert feed.watermark is not None
        poller = self.poller
        checks = {i: _latest_check(poller.waiters[i]) for i in self.unvouched}
        feedable = {i: t for i, t in checks.items() if t is not None}
        if not feedable or self._backfill_exhausted:
            return False
        target = min(feedable.values()) - feed.overlap
        if target >= feed.covered_from:
            return False  # read already, but no longer held (beyond retention): the ids are cheaper
        id_cost = math.ceil(len(feedable) / poller.batch_size)
        estimate = self._pages_back_to(target)
        log.info(
            "OES poller %r/%r: %d waiting allocations not covered by the change feed yet, oldest last check "
            "%.0f s before the feed's window: paging back about %d pages vs %d id batches",
            poller.key[0],
            poller.enterprise_id,
            len(checks),
            feed.covered_from - target,
            estimate,
            id_cost,
        )
        if estimate >= id_cost:
            return False
        self.backfills += 1
        self._backfill_members = set(feedable)
        self._backfill_target = target
        feed.request_backfill(target, max_pages=id_cost)
        return True

    def _pages_back_to(self, target: float) -> int:
        """Pages the feed would read to reach back to ``target``, at the change rate its window shows."""
        feed = self.feed
        assert feed is not None
        assert feed.watermark is not None
        assert feed.covered_from is not None
        window = feed.watermark - max(feed.covered_from, feed.horizon or feed.covered_from)
        held = feed.held_since(feed.watermark - window) if window > 0 else 0
        rate = held / window if window > 0 else 0.0
        return max(1, math.ceil(rate * (feed.covered_from - target) / feed.page_size))

    def _settle_backfill(self) -> None:
        """After a backfill poll: its members whose last check it reached back to are covered."""
        feed = self.feed
        members = self._backfill_members
        if members is None or feed is None or feed._backfill_to is not None:
            return  # none asked, or the backfill has not run yet
        target, self._backfill_members, self._backfill_target = self._backfill_target, None, None
        covered = feed.covered_from
        if covered is None or target is None or covered > target:
            # The budget ran out before the target: paging further would no longer be the cheaper way.
            self._backfill_exhausted = True
        for allocation_id in members:
            waiters = self.poller.waiters.get(allocation_id)
            if waiters is None:
                self.unvouched.pop(allocation_id, None)
                continue
            last_check = _latest_check(waiters)
            # Every row the backfill read reached this poller while it waited (the poller takes every row);
            # rows the feed handed out before this trigger registered are in what it holds.
            if covered is not None and last_check is not None and last_check - feed.overlap >= covered:
                self.unvouched.pop(allocation_id, None)
                row = feed.lookup(allocation_id)
                if row is not None:
                    self._row(row)

    # ------------------------------------------------------------------ id checks

    async def _check_unvouched(self, batch: list[str]) -> None:
        batch = [i for i in batch if i in self.poller.waiters and i in self.unvouched]
        if not batch:
            return
        self.id_check_requests += 1
        checked = await self._check_ids(batch)
        feed = self.feed
        assert feed is not None
        for allocation_id, server_time in checked.items():
            waiters = self.poller.waiters.get(allocation_id)
            if waiters is None:
                self.unvouched.pop(allocation_id, None)
                continue
            for waiter in each_waiter(waiters):
                waiter.last_check = max(waiter.last_check or server_time, server_time)
            if feed.vouches_for(server_time):
                self.unvouched.pop(allocation_id, None)
        # What failed transiently (or came without a server time) stays unvouched: checked after the next poll.

    async def _check_ids(
        self, batch: list[str], inspect: Callable[[list[Any]], None] | None = None
    ) -> dict[str, float]:
        """One list request for ``batch``; wake the final ones. Return, per id still waiting, when it was checked.

        The times are the server's (``Date``); ids that could not be checked, or came without a ``Date``, are
        left out.

        :param inspect: Sees the raw records before they wake anyone (the reconciliation's miss check).
        """
        poller = self.poller
        if self._list_rejected:
            return await self._check_singly(batch)
        page, rejected = await poller._list_ids(batch)
        if rejected is not None:
            if not self._list_rejected:
                self._list_rejected = True
                log.warning(
                    "OES poller %r/%r: the list endpoint rejected a check by ids (%s); checking unvouched "
                    "allocations with one GET each from now on.",
                    poller.key[0],
                    poller.enterprise_id,
                    rejected,
                )
            return await self._check_singly(batch)
        if page is None:
            return {}
        if inspect is not None:
            inspect(page.records)
        seen = poller._apply_records(batch, page.records)
        checked = {i: page.server_time for i in batch if i in seen} if page.server_time is not None else {}
        # Not in the list: the single GET settles it (a 404 there is a real "no such allocation").
        checked.update(await self._check_singly([i for i in batch if i not in seen]))
        return checked

    async def _check_singly(self, ids: list[str]) -> dict[str, float]:
        """One GET per id, through the poller's own single check; return the server times of those checked."""
        checked: dict[str, float] = {}
        for allocation_id in ids:
            server_time = await self.poller._poll_one(allocation_id)
            if server_time is not None:
                checked[allocation_id] = server_time
        return checked

    async def _reconcile_step(self) -> None:
        """One batch of the safety net per poll; a new pass every ``reconcile_interval`` seconds."""
        poller = self.poller
        loop = asyncio.get_running_loop()
        if not self._reconcile_queue:
            if self._next_reconcile is None or loop.time() < self._next_reconcile:
                return
            self._reconcile_queue = list(poller.waiters)
            self._reconcile_queue.reverse()  # popped from the end: oldest waiters first
            self._next_reconcile = loop.time() + poller.connection.settings.reconcile_interval
            self.reconcile_passes += 1
        batch: list[str] = []
        while self._reconcile_queue and len(batch) < poller.batch_size:
            allocation_id = self._reconcile_queue.pop()
            if allocation_id in poller.waiters:
                batch.append(allocation_id)
        if not batch:
            return
        feed = self.feed
        assert feed is not None
        # What the feed claims to have seen: rows stamped before its last poll's server time minus the overlap.
        claimed = None if feed.watermark is None else feed.watermark - feed.overlap
        vouched = {i.lower() for i in batch if i not in self.unvouched}
        self.reconcile_requests += 1
        await self._check_ids(batch, inspect=lambda records: self._find_missed(records, claimed, vouched))

    def _find_missed(self, records: list[Any], claimed: float | None, vouched: set[str]) -> None:
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
            self.poller.metrics.reconciliation_finds(1)
            log.error(
                "OES poller %r/%r: the reconciliation found allocation %s %s (updatedAt %s), which the change "
                "feed should have seen and did not. The API may not keep its sort or filter promises, or commit "
                "lag plus clock skew exceeds the feed overlap (%g s). The trigger fires now.",
                self.poller.key[0],
                self.poller.enterprise_id,
                record_id,
                record.get("status"),
                record.get("updatedAt"),
                self.feed.overlap if self.feed is not None else float("nan"),
            )


def _latest_check(first: _Waiter) -> float | None:
    """The latest ``last_check`` among the waiters of one allocation (any of them proves 'not final then').

    :param first: The allocation's entry in the poller's ``waiters``.
    """
    checks = [w.last_check for w in each_waiter(first) if w.last_check is not None]
    return max(checks) if checks else None
