"""The watch loop of an asset watcher: change-feed batches in, ``(item, commit)`` pairs out, forever.

Both the plain ``run()`` and Airflow 3.3's shared stream drive it; the delivery guarantee and the order of
writes around a crash are in ``docs/internals/event-trigger.rst``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._time import format_time, from_epoch, parse_time
from airflow_provider_oes.triggers._watching.emission import event_payload, log_feed_error, max_per_event, parse_rows
from airflow_provider_oes.triggers._watching.metrics import join_metrics, leave_metrics, report_metrics
from airflow_provider_oes.triggers._watching.reconcile import RECONCILE_MEMORY, Reconciler
from airflow_provider_oes.triggers._watching.redelivery import Redelivery
from airflow_provider_oes.triggers._watching.resource import resource_of
from airflow_provider_oes.triggers._watching.subscribe import open_feed_subscription
from airflow_provider_oes.triggers._watching.window import EventWindow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from airflow_provider_oes._metrics import WatcherMetrics
    from airflow_provider_oes.triggers._feed import FeedBatch, Subscription
    from airflow_provider_oes.triggers._watching.resource import WatchedRecord
    from airflow_provider_oes.triggers._watching.subscribe import WatchedTrigger
    from airflow_provider_oes.triggers._watching.window import StateStore

log = logging.getLogger("airflow_provider_oes.triggers.event")

HEARTBEAT_SECONDS = 30.0
"""Longest gap between two items of the shared stream, even while the feed fails and backs off: Airflow
force-fails a shared-stream subscriber that sits on one item for ``[triggerer] shared_stream_ack_timeout``
(300 s by default)."""
CHECKPOINT_SECONDS = 60.0
"""While nothing new arrives, the state (the moving floor) is written at most this often."""
MAX_RESTART_BACKOFF = 300.0
"""Longest pause before trying again after the feed or the state store could not be reached."""


@dataclass(frozen=True)
class Commit:
    """What to write once Airflow confirmed the item's event (or, for an item without one, at once).

    :param snapshot: The window after this item, or ``None`` when this item must not move the state.
    :param ids: The allocation ids of the item's event (empty for heartbeats and markers).
    :param records: The event's allocations as emitted (for the delivery ledger).
    """

    snapshot: dict[str, Any] | None
    ids: tuple[str, ...] = ()
    records: tuple[dict[str, Any], ...] = ()


class Watcher:
    """The watch loop shared by both paths: feed batches in; ``(item, commit)`` pairs out, forever.

    An item is ``{"event": <payload>}`` for allocations to emit, ``{"event": None}`` otherwise (after each
    poll, and at least every :data:`HEARTBEAT_SECONDS`). It never returns and never raises: a failing feed,
    connection or state store is logged and tried again with backoff.

    :param trigger: The trigger (its configuration).
    :param store: Where the state lives; ``None``: in memory only.
    :param markers: Follow each event with an item of its own (closes the event's window in the shared
        stream at once, so its confirmation, and with it the state write, is not held until the next poll).
    :param clock: Monotonic clock (tests).
    :param sleep: ``asyncio.sleep`` (tests).
    :param open_subscription: Opens the feed subscription (tests replace it).
    :param wall: Wall clock, epoch seconds (the delivery ledger's times; tests).
    """

    def __init__(
        self,
        trigger: WatchedTrigger,
        store: StateStore | None,
        *,
        markers: bool,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        open_subscription: Callable[..., Any] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.trigger = trigger
        self.store = store
        self.markers = markers
        self._clock = clock
        self._sleep = sleep
        self.resource = resource_of(trigger)
        self._open_subscription = open_subscription or self.resource.open_subscription or open_feed_subscription
        self.window: EventWindow | None = None
        self.emitted_events = 0
        self._confirmed: dict[str, Any] | None = None  # the window after the last event Airflow confirmed
        self._unconfirmed: dict[str, None] = {}  # ids handed to Airflow, storage not confirmed yet (ordered)
        self.unrecorded: dict[str, None] = {}
        """Ids whose event Airflow confirmed but whose state write has not succeeded yet (a restart now would
        emit them again)."""
        self._saved: dict[str, Any] | None = None  # what was written last
        self._saved_at = -math.inf
        self._halted = False
        self._failures = 0
        self._metrics: WatcherMetrics | None = None  # shared with the loop's other watchers of the feed's key
        self.cap = max_per_event(trigger)
        consumers = getattr(trigger, "acknowledged_by", None)
        self.redelivery = (
            None
            if not consumers
            else Redelivery(
                store,
                f"{store.key if store is not None else 'memory'}/deliveries",
                tuple(consumers),
                trigger.redeliver_after,
                trigger.max_redeliveries,
                wall,
                resource_of(trigger).noun,
            )
        )
        self._again: dict[str, WatchedRecord] = {}  # unacknowledged deliveries to emit again

    def __repr__(self) -> str:
        trigger = self.trigger
        return (
            f"{type(trigger).__name__}({trigger.oes_conn_id}/{trigger.enterprise_id or '<connection enterprise>'} "
            f"{trigger.query.describe()})"
        )

    async def _backoff(self, what: str, exc: BaseException) -> None:
        self._failures += 1
        delay = min(MAX_RESTART_BACKOFF, 2.0 ** min(self._failures, 9))
        log.error("%r: %s failed (%s: %s); trying again in %.0f s", self, what, type(exc).__name__, exc, delay)
        await self._sleep(delay)

    async def _restore(self) -> list[str]:
        """Read the stored window (retrying until the store answers); return the ids that were in flight."""
        if self.store is None:
            return []
        while True:
            try:
                state = await self.store.load()
                break
            except Exception as exc:
                await self._backoff("reading the asset state store", exc)
        if state is None:
            log.warning(
                "%r: no stored state under %s: a NEW stream (a first start, or a changed connection, enterprise, "
                "statuses or start_time), starting from %s. Changes from before that are not emitted (an "
                "AllocationEventTrigger's start_time replays them).",
                self,
                self.store.key,
                self.trigger.start_time or "now (server time)",
            )
            return []
        try:
            # The overlap is the feed's; it is set again when the feed is opened.
            self.window, inflight = EventWindow.restore(self.trigger.query, timedelta(0), state, self.resource)
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "%r: the stored state is unreadable (%s); starting from %s as on a first start. Changes "
                "made while the state was unreadable are not emitted.",
                self,
                exc,
                self.trigger.start_time or "now",
            )
            return []
        self._confirmed = self.window.snapshot()
        self._saved = state
        log.info(
            "%r: resuming from stored state: floor %s, %d emitted ids remembered.",
            self,
            format_time(self.window.floor),
            len(self.window.emitted),
        )
        if inflight:
            log.warning(
                "%r: the previous run handed %ss %s to Airflow but stopped before Airflow confirmed it "
                "stored that event; emitting them again (at least once). If that event was stored, they are "
                "emitted twice: act on them idempotently (by id, status and updatedAt).",
                self,
                self.resource.noun,
                ", ".join(inflight),
            )
        return inflight

    def since(self, overlap: float) -> float | None:
        """Where the feed subscription must start (server time, epoch s): the window's floor plus the overlap."""
        if self.window is not None:
            return self.window.floor.timestamp() + overlap
        if self.trigger.start_time is not None:
            return parse_time(self.trigger.start_time, "start_time").timestamp() + overlap
        return None

    async def items(self) -> AsyncIterator[tuple[dict[str, Any], Commit | None]]:
        """The loop (see the class docstring)."""
        # Ids that were in flight are above the stored floor and not remembered as emitted: the feed, read from
        # that floor, hands them back and they are emitted again. Nothing else to do for them.
        await self._restore()
        pending: dict[str, WatchedRecord] = {}
        last_event = -math.inf
        while True:
            try:
                subscription = await self._open_subscription(self)
            except Exception as exc:
                await self._backoff("opening the OES change feed", exc)
                continue
            self._failures = 0
            self._metrics = join_metrics(self.trigger.oes_conn_id, subscription.feed.enterprise_id)
            try:
                async for item in self._consume(subscription, pending, last_event):
                    if item[0].get("event"):
                        last_event = self._clock()
                    yield item
            except Exception as exc:  # a bug or a dead feed: start a fresh subscription from the window's floor
                await self._backoff("watching the OES change feed", exc)
            finally:
                # Last word before the subscription goes (with it, perhaps, the feed and its client): what was
                # gathered, and one watcher fewer.
                leave_metrics(self._metrics)
                self._report(subscription, final=True)
                self._metrics = None
                subscription.close()

    async def _consume(
        self, subscription: Any, pending: dict[str, WatchedRecord], last_event: float
    ) -> AsyncIterator[tuple[dict[str, Any], Commit | None]]:
        overlap = timedelta(seconds=float(subscription.feed.overlap))
        if self.window is not None:
            self.window.overlap, self.window.memory = overlap, RECONCILE_MEMORY
        reconciler = Reconciler(self._clock)
        logged_error: str | None = None
        last_item = self._clock()
        while True:
            self._report(subscription)
            wait = max(0.1, HEARTBEAT_SECONDS - (self._clock() - last_item))
            try:
                batch = await asyncio.wait_for(subscription.__anext__(), wait)
            except asyncio.TimeoutError:
                last_item = self._clock()
                yield {"event": None}, None
                continue
            except StopAsyncIteration:
                raise RuntimeError("the change feed subscription ended") from None
            if batch.error is not None:
                logged_error = log_feed_error(self, batch.error, logged_error)
                if subscription.feed.closed:
                    raise RuntimeError(f"the change feed stopped: {batch.error}")
                last_item = self._clock()
                yield {"event": None}, None
                continue
            logged_error = None
            if self.window is None and not self._start_window(batch, subscription, overlap):
                continue
            assert self.window is not None
            allocations = parse_rows(self, batch.rows, subscription.feed.enterprise_id, self.trigger)
            for allocation in self.window.accept(allocations):
                pending[self.resource.key(allocation).lower()] = allocation
            if not batch.final:
                continue
            if batch.resume_from is not None:
                self.window.advance(from_epoch(batch.resume_from))
            last_item = self._clock()
            await self._redeliveries(subscription.feed.enterprise_id)
            reconciler.tick(subscription, self.window)
            if (pending or self._again) and self._clock() - last_event >= self.trigger.poll_interval:
                item, commit = await self._emit(pending, batch.polled_at, subscription.feed.enterprise_id)
                last_event = self._clock()
                yield item, commit
                if self.markers:
                    yield {"event": None}, commit
            else:
                # Nothing to emit (or not yet: one event per poll interval): keep the stream moving; the floor
                # may be written, kept below the allocations waiting to be emitted.
                yield {"event": None}, Commit(self.window.snapshot(holding=pending.values()))

    def _start_window(self, batch: FeedBatch, subscription: Subscription, overlap: timedelta) -> bool:
        """First start: from the configured start time, or from "now", the server's time of this first poll
        (or the feed's cutoff when the server sends no Date). False when the batch tells no time yet."""
        start: float | None = self.since(0.0)
        if start is None:
            start = batch.polled_at
        if start is None and subscription.floor is not None:
            start = subscription.floor + overlap.total_seconds()
        if start is None:
            return False
        self.window = EventWindow(
            self.trigger.query, from_epoch(start), overlap, memory=RECONCILE_MEMORY, resource=self.resource
        )
        self._confirmed = self.window.snapshot()
        log.info("%r: watching from %s (server time).", self, format_time(self.window.floor))
        return True

    async def _redeliveries(self, enterprise_id: str) -> None:
        """Take in what the delivery ledger says to emit again (acknowledged delivery)."""
        if self.redelivery is None:
            return
        try:
            for record in await self.redelivery.due():
                allocation = self.resource.parse(record, record["id"], enterprise_id)
                self._again[self.resource.key(allocation).lower()] = allocation
            await self.redelivery.save()
        except Exception as exc:  # the store is unreachable: the ledger is read again next poll
            log.error("%r: reading the delivery ledger failed (%s: %s)", self, type(exc).__name__, exc)

    async def _emit(
        self, pending: dict[str, WatchedRecord], polled_at: float | None, enterprise_id: str
    ) -> tuple[dict[str, Any], Commit]:
        """One event with up to ``cap`` allocations (re-emissions first, then the oldest pending), in flight first."""
        assert self.window is not None
        order = sorted(pending.values(), key=lambda a: (a.updated_at, a.id))
        again = list(self._again.values())[: self.cap]
        allocations = again + order[: self.cap - len(again)]
        for allocation in allocations:
            pending.pop(self.resource.key(allocation).lower(), None)
            self._again.pop(self.resource.key(allocation).lower(), None)
        if pending:
            log.info("%r: %d record(s) more than one event holds wait for the next poll.", self, len(pending))
        ids = tuple(self.resource.key(a) for a in allocations)
        snapshot = self.window.snapshot(holding=pending.values())
        await self._mark_in_flight(ids)
        payload = event_payload(self.trigger, allocations, polled_at, enterprise_id)
        self.emitted_events += 1
        if self._metrics is not None:
            self._metrics.emitted(allocations)
        log.info(
            "%r: emitting %d %s(s) that became %s: %s",
            self,
            len(ids),
            self.resource.noun,
            "/".join(self.trigger.statuses or ()),
            ", ".join(ids),
        )
        return {"event": payload}, Commit(snapshot, ids, tuple(payload[self.resource.payload_key]))

    def _report(self, subscription: Any, final: bool = False) -> None:
        report_metrics(self._metrics, getattr(subscription.feed, "connection", None), final)

    async def _save_quietly(self, snapshot: dict[str, Any], what: str) -> bool:
        if self.store is None:
            return False
        try:
            await self.store.save(snapshot)
        except Exception as exc:
            log.error("%r: could not write the %s state (%s: %s)", self, what, type(exc).__name__, exc)
            return False
        return True

    async def _mark_in_flight(self, ids: Sequence[str]) -> None:
        """Before the handover: the last confirmed window, plus these ids as in flight (named after a crash)."""
        for allocation_id in ids:
            self._unconfirmed[allocation_id.lower()] = None
        if self._confirmed is not None and not self._halted:
            snapshot = {**self._confirmed, "inflight": sorted(self._unconfirmed)}
            if await self._save_quietly(snapshot, "in-flight"):
                self._saved = snapshot

    async def commit(self, commit: Commit) -> None:
        """Airflow stored the item's event (or the item had none): write the window as it was after the item.

        :param commit: What the item carried.
        """
        if commit.snapshot is None or self._halted:
            return
        if self.redelivery is not None and commit.records:
            self.redelivery.confirmed(commit.records)
            await self.redelivery.save()
        for allocation_id in commit.ids:
            self._unconfirmed.pop(allocation_id.lower(), None)
            # Confirmed, but recorded only once a write succeeds (the window may already have pruned the id,
            # when its updatedAt fell below the floor: then only the written floor keeps it from coming back).
            self.unrecorded[allocation_id.lower()] = None
        self._confirmed = commit.snapshot
        snapshot = {**commit.snapshot, "inflight": sorted(self._unconfirmed)}
        saved = self._saved or {}
        if snapshot == saved:
            self.unrecorded.clear()
            return
        if (
            not self.unrecorded
            and snapshot.get("emitted") == saved.get("emitted")
            and snapshot.get("inflight") == saved.get("inflight")
            and self._clock() - self._saved_at < CHECKPOINT_SECONDS
        ):
            return  # only the floor moved: checkpoint it now and then, not after every poll
        recorded = list(self.unrecorded)
        if await self._save_quietly(snapshot, "emitted"):
            self._saved = snapshot
            self._saved_at = self._clock()
            self.unrecorded.clear()
            if recorded:
                log.info("%r: Airflow stored the event; recorded as emitted: %s", self, ", ".join(recorded))

    def halt(self, reason: str) -> None:
        """Stop writing state (an event was not confirmed): the next start resumes from the last confirmed one."""
        if not self._halted:
            self._halted = True
            log.warning("%r: %s; the state stays at the last confirmed event.", self, reason)
