"""Event-driven settlement: start DAG runs when allocations of an enterprise become final.

:class:`AllocationEventTrigger` is a :class:`~airflow.triggers.base.BaseEventTrigger` for an
:class:`~airflow.sdk.AssetWatcher`::

    cleared = Asset(
        "oes://<enterprise id>/allocations/cleared",
        watchers=[AssetWatcher(name="oes_cleared", trigger=AllocationEventTrigger(enterprise_id="<enterprise id>"))],
    )

    with DAG("settle", schedule=[cleared], ...): ...

It reads the enterprise's change feed (:mod:`airflow_provider_oes.triggers._feed`): the watchers and the
deferred sensors of one connection and enterprise in a triggerer share the feed's requests and the
connection's rate limit.

Delivery guarantee (Airflow 3.3)
--------------------------------
Each poll that finds allocations which became final (and match the filters) gives **one** trigger event
carrying all of them, so Airflow creates one asset event per poll, never a burst (Airflow 3.3.2 strands the
later events of a burst: apache/airflow#62501). Two events of one watcher are at least ``poll_interval``
apart; the scheduler consumes an asset's queue row within a scheduler loop, so the next event finds no queue
row left to collide with. If the scheduler is slower than that, the later event is not lost: the next event's
run picks it up (it is already in ``asset_event``).

The trigger remembers, in the watched asset's ``asset_state_store``, the floor of its window (the feed's
watermark minus the overlap) and the ids it emitted at or above it. The order of events around a crash:

1. the allocations that became final are put in one event and marked *in flight* in the state store;
2. the event is handed to Airflow (``yield``); the triggerer stores it in its metadata DB about a second
   later;
3. Airflow confirms the storage (Airflow 3.3's shared-stream acknowledgements: ``advance`` is called only
   for events "confirmed persisted to the metadata database"); only then is the state written with those ids
   as emitted and the window moved on.

So the state never claims an event that Airflow has not stored: a crash before step 3 makes the next
triggerer emit those allocations again (**at least once**, never missed). A duplicate happens only when the
triggerer dies in the second or so between Airflow storing the event and the confirmation reaching the
trigger (step 2 to 3); the restarted trigger logs the ids it re-emits as possibly duplicated. In every other
case (restarts, Airflow re-creating the trigger, graceful shutdowns, crashes at any other moment) each
allocation is emitted **exactly once**. A plain ``run()`` (used only where the triggerer cannot drive shared
streams) writes the state right after the handover instead; a crash in the second before Airflow stores the
event would then lose it, which is why Airflow 3.3 is required.

Airflow 3.2 has neither the state store nor the acknowledgements: constructing the trigger there raises a
clear error (at DAG parse), instead of silently giving a weaker guarantee.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_oes.triggers._event_state import EventQuery, EventWindow, StateStore, format_time, parse_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence

    from airflow_provider_oes._metrics import WatcherMetrics
    from airflow_provider_oes.models import Allocation

log = logging.getLogger(__name__)

FINAL_STATUSES = ("cleared", "released")
ALLOCATION_TYPES = ("allocation", "deallocation")
DEFAULT_POLL_INTERVAL = 10.0
HEARTBEAT_SECONDS = 30.0
"""Longest gap between two items of the shared stream, even while the feed fails and backs off: Airflow
force-fails a shared-stream subscriber that sits on one item for ``[triggerer] shared_stream_ack_timeout``
(300 s by default)."""
CHECKPOINT_SECONDS = 60.0
"""While nothing new arrives, the state (the moving floor) is written at most this often."""
MAX_RESTART_BACKOFF = 300.0
"""Longest pause before trying again after the feed or the state store could not be reached."""
_SHARED_STREAM_NAME = "airflow_provider_oes.allocation_events"


class _AirflowTooOldError(RuntimeError):
    pass


def _require_airflow_33() -> None:
    """Raise a clear error on Airflow < 3.3 (no asset state store, no shared-stream acknowledgements)."""
    if not hasattr(BaseEventTrigger, "create_shared_stream_producer"):
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        try:
            from airflow import __version__ as version
        except ImportError:  # pragma: no cover
            version = "unknown"
        raise OESInvalidRequestError(
            f"AllocationEventTrigger needs Airflow 3.3 or later (found {version}): it keeps its exactly-once state "
            "in the watched asset's state store and writes it only after Airflow confirms it stored each event "
            "(shared-stream acknowledgements); Airflow 3.2 has neither. Use AllocationStatusSensor on 3.2."
        )


def _names(name: str, values: Iterable[str] | str | None, allowed: Sequence[str] | None) -> tuple[str, ...] | None:
    """A filter as a sorted tuple without duplicates, checked; ``None`` stays ``None`` (no filter)."""
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise OESInvalidRequestError(f"{name} must not be empty (leave it out, or None, to not filter on it)")
    for item in items:
        if not isinstance(item, str) or not item.strip() or item != item.strip() or "," in item:
            raise OESInvalidRequestError(f"{name} must be non-empty strings without commas or spaces, got {item!r}")
        if allowed is not None and item not in allowed:
            raise OESInvalidRequestError(f"{name} may only contain {', '.join(allowed)}; got {item!r}")
    return tuple(sorted(set(items)))


class AllocationEventTrigger(BaseEventTrigger):
    """Emit an event whenever allocations of an enterprise become final (``cleared`` by default).

    Each event's payload (stored by Airflow in the asset event's ``extra["payload"]``)::

        {"enterprise_id": "...", "oes_conn_id": "...", "statuses": ["cleared"],
         "polled_at": "<server time of the poll>", "allocations": [<each allocation in the API's JSON shape>]}

    Read it downstream with :func:`~airflow_provider_oes.assets.allocations_from_asset_event`.

    The filters are the list endpoint's own (``statuses``, ``types``, ``currencies``, ``connectionIds``).
    ``types``, ``currencies`` and ``connection_ids`` are sent as the feed's query, so the API returns only
    those rows. ``statuses`` is applied to the feed's rows instead: the feed always reads both final statuses,
    so that the ``cleared`` and ``released`` watchers of an enterprise, and its deferred sensors, read **one**
    feed (one request per interval) rather than one each.

    :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id`` extra
        (read in the triggerer).
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param statuses: Final statuses to emit: ``cleared`` (default) and/or ``released``.
    :param types: Only ``allocation`` or ``deallocation`` records; ``None``: both.
    :param currencies: Only these currencies (e.g. ``["ofctbtc"]``); ``None``: all.
    :param connection_ids: Only allocations to these OES connections (``connectionId``); ``None``: all.
    :param poll_interval: Seconds between polls of the feed, and the least time between two events of this
        watcher.
    :param start_time: On the very first start, emit allocations that became final from this time on (ISO 8601,
        server time) instead of from "now" (the server's ``Date`` of the first poll, in whole seconds): replays
        history. Ignored once the watcher has state; changing it makes a new watcher with its own, fresh state.
    """

    def __init__(
        self,
        *,
        enterprise_id: str | None = None,
        oes_conn_id: str = "oes_default",
        statuses: Sequence[str] | str = ("cleared",),
        types: Sequence[str] | str | None = None,
        currencies: Sequence[str] | str | None = None,
        connection_ids: Sequence[str] | str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        start_time: str | None = None,
    ) -> None:
        from airflow_provider_oes._api import validate_enterprise_id
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        super().__init__()
        _require_airflow_33()
        self.enterprise_id = None if enterprise_id is None else validate_enterprise_id(enterprise_id)
        if not isinstance(oes_conn_id, str) or not oes_conn_id:
            raise OESInvalidRequestError(f"oes_conn_id must be a connection id, got {oes_conn_id!r}")
        self.oes_conn_id = oes_conn_id
        self.statuses = _names("statuses", statuses, FINAL_STATUSES)
        if self.statuses is None:
            raise OESInvalidRequestError("statuses must name cleared and/or released")
        self.types = _names("types", types, ALLOCATION_TYPES)
        self.currencies = _names("currencies", currencies, None)
        self.connection_ids = _names("connection_ids", connection_ids, None)
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not math.isfinite(poll_interval)
            or poll_interval <= 0
        ):
            raise OESInvalidRequestError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        # Kept as given (normalised to UTC ISO) so that the kwargs, and with them the trigger's identity, are stable.
        self.start_time = None if start_time is None else format_time(parse_time(start_time, "start_time"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.serialize()[1].items())})"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs (Airflow identifies a watcher trigger by their hash)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "enterprise_id": self.enterprise_id,
                "oes_conn_id": self.oes_conn_id,
                "statuses": list(self.statuses or ()),
                "types": None if self.types is None else list(self.types),
                "currencies": None if self.currencies is None else list(self.currencies),
                "connection_ids": None if self.connection_ids is None else list(self.connection_ids),
                "poll_interval": self.poll_interval,
                "start_time": self.start_time,
            },
        )

    @property
    def query(self) -> EventQuery:
        """The filters (the list endpoint's query)."""
        return EventQuery(
            statuses=tuple(self.statuses or ()),
            types=self.types,
            currencies=self.currencies,
            connection_ids=self.connection_ids,
        )

    @property
    def fingerprint(self) -> str:
        """What identifies this watcher's state: connection, enterprise, filters and start time.

        Not the poll interval: tuning it keeps the state (and so the exactly-once guarantee) across the change.
        """
        identity = {
            "conn": self.oes_conn_id,
            "enterprise": self.enterprise_id,
            "query": self.query.list_params(),
            "start": self.start_time,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def state_key(self) -> str:
        """The key of this watcher's snapshot in the asset state store."""
        return f"oes_allocation_events_{self.fingerprint}"

    def _state_store(self) -> StateStore | None:
        accessors = getattr(self, "asset_state_store", None)
        if accessors is None:
            log.warning(
                "%r has no asset state store (it is not watching an asset in a triggerer): it cannot remember "
                "what it emitted across restarts.",
                self,
            )
            return None
        return StateStore(accessors, self.state_key)

    # ------------------------------------------------------------------ Airflow 3.3 shared stream (ack mode)

    def shared_stream_key(self) -> Hashable | None:
        """One shared stream per watcher identity: its producer commits the state only after Airflow stored events."""
        return (_SHARED_STREAM_NAME, self.fingerprint, self.poll_interval)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> _EventStreamProducer:
        """The producer of this watcher's stream (ack mode: see the module docstring)."""
        trigger = cls(**kwargs)
        return _EventStreamProducer(trigger, _handoff_key(trigger))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn the stream's items into trigger events (items without allocations keep the stream moving)."""
        _hand_over_store(_handoff_key(self), self._state_store())
        async for item in shared_stream:
            payload = item.get("event") if isinstance(item, dict) else None
            if payload:
                yield TriggerEvent(payload)

    # ------------------------------------------------------------------ plain run()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Watch forever without Airflow's storage confirmation (see the module docstring: weaker).

        The triggerer of Airflow 3.3 uses the shared stream instead; this runs when a triggerer cannot.
        """
        watcher = _Watcher(self, self._state_store(), markers=False)
        async for item, commit in watcher.items():
            payload = item.get("event")
            if payload:
                yield TriggerEvent(payload)
            if commit is not None:
                await watcher.commit(commit)


@dataclass(frozen=True)
class _Commit:
    """What to write once Airflow confirmed the item's event (or, for an item without one, at once).

    :param snapshot: The window after this item, or ``None`` when this item must not move the state.
    :param ids: The allocation ids of the item's event (empty for heartbeats and markers).
    """

    snapshot: dict[str, Any] | None
    ids: tuple[str, ...] = ()


class _Watcher:
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
    """

    def __init__(
        self,
        trigger: AllocationEventTrigger,
        store: StateStore | None,
        *,
        markers: bool,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        open_subscription: Callable[..., Any] | None = None,
    ) -> None:
        self.trigger = trigger
        self.store = store
        self.markers = markers
        self._clock = clock
        self._sleep = sleep
        self._open_subscription = open_subscription or _open_feed_subscription
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

    def __repr__(self) -> str:
        trigger = self.trigger
        return (
            f"AllocationEventTrigger({trigger.oes_conn_id}/{trigger.enterprise_id or '<connection enterprise>'} "
            f"{'&'.join(f'{k}={v}' for k, v in trigger.query.list_params().items())})"
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
            log.info("%r: no stored state; starting from %s.", self, self.trigger.start_time or "now (server time)")
            return []
        try:
            # The overlap is the feed's; it is set again when the feed is opened.
            self.window, inflight = EventWindow.restore(self.trigger.query, timedelta(0), state)
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "%r: the stored state is unreadable (%s); starting from %s as on a first start. Allocations "
                "that became final while the state was unreadable are not emitted.",
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
                "%r: the previous run handed allocations %s to Airflow but stopped before Airflow confirmed it "
                "stored that event; emitting them again (at least once). If that event was stored, they are "
                "emitted twice: settle idempotently by allocation id.",
                self,
                ", ".join(inflight),
            )
        return inflight

    def _since(self, overlap: float) -> float | None:
        """Where the feed subscription must start (server time, epoch s): the window's floor plus the overlap."""
        if self.window is not None:
            return self.window.floor.timestamp() + overlap
        if self.trigger.start_time is not None:
            return parse_time(self.trigger.start_time, "start_time").timestamp() + overlap
        return None

    async def items(self) -> AsyncIterator[tuple[dict[str, Any], _Commit | None]]:
        """The loop (see the class docstring)."""
        # Ids that were in flight are above the stored floor and not remembered as emitted: the feed, read from
        # that floor, hands them back and they are emitted again. Nothing else to do for them.
        await self._restore()
        pending: dict[str, Allocation] = {}
        last_event = -math.inf
        while True:
            try:
                subscription = await self._open_subscription(self)
            except Exception as exc:
                await self._backoff("opening the OES change feed", exc)
                continue
            self._failures = 0
            self._metrics = _join_metrics(self.trigger.oes_conn_id, subscription.feed.enterprise_id)
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
                _leave_metrics(self._metrics)
                self._report(subscription, final=True)
                self._metrics = None
                subscription.close()

    async def _consume(
        self, subscription: Any, pending: dict[str, Allocation], last_event: float
    ) -> AsyncIterator[tuple[dict[str, Any], _Commit | None]]:
        from airflow_provider_oes._api import parse_allocation_record

        overlap = timedelta(seconds=float(subscription.feed.overlap))
        if self.window is not None:
            self.window.overlap = overlap
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
                logged_error = self._log_error(batch.error, logged_error)
                if _feed_closed(subscription.feed):
                    raise RuntimeError(f"the change feed stopped: {batch.error}")
                last_item = self._clock()
                yield {"event": None}, None
                continue
            logged_error = None
            if self.window is None:
                # First start: from the configured start time, or from "now", the server's time of this first
                # poll (or the feed's cutoff when the server sends no Date).
                start: float | None = self._since(0.0)
                if start is None:
                    start = batch.polled_at
                if start is None and subscription.floor is not None:
                    start = subscription.floor + overlap.total_seconds()
                if start is None:
                    continue
                self.window = EventWindow(self.trigger.query, datetime.fromtimestamp(start, timezone.utc), overlap)
                self._confirmed = self.window.snapshot()
                log.info("%r: watching from %s (server time).", self, format_time(self.window.floor))
            allocations = []
            for row in batch.rows:
                try:
                    allocations.append(
                        parse_allocation_record(
                            row.record, allocation_id=row.id, enterprise_id=subscription.feed.enterprise_id
                        )
                    )
                except Exception as exc:
                    log.error("%r: skipping allocation %s: its record is invalid: %s", self, row.id, exc)
            for allocation in self.window.accept(allocations):
                pending[allocation.id.lower()] = allocation
            if not batch.final:
                continue
            if batch.resume_from is not None:
                self.window.advance(datetime.fromtimestamp(batch.resume_from, timezone.utc))
            last_item = self._clock()
            if pending and self._clock() - last_event >= self.trigger.poll_interval:
                allocations_out = sorted(pending.values(), key=lambda a: (a.updated_at, a.id))
                pending.clear()
                ids = tuple(a.id for a in allocations_out)
                snapshot = self.window.snapshot()
                await self._mark_in_flight(ids)
                payload = self._payload(allocations_out, batch.polled_at, subscription.feed.enterprise_id)
                self.emitted_events += 1
                if self._metrics is not None:
                    self._metrics.emitted(allocations_out)
                last_event = self._clock()
                log.info(
                    "%r: emitting %d allocation(s) that became %s: %s",
                    self,
                    len(ids),
                    "/".join(self.trigger.statuses or ()),
                    ", ".join(ids),
                )
                yield {"event": payload}, _Commit(snapshot, ids)
                if self.markers:
                    yield {"event": None}, _Commit(snapshot, ids)
            else:
                # Nothing to emit (or not yet: one event per poll interval): keep the stream moving; the floor
                # may be written, but not while allocations wait to be emitted (the state would claim them).
                yield {"event": None}, (None if pending else _Commit(self.window.snapshot()))

    def _report(self, subscription: Any, final: bool = False) -> None:
        """Send the watchers' metrics when due (every ``FLUSH_PERIOD`` s), or now when ``final``.

        The connection's request metrics and rate-limit gauges go along: they are gathered by its shared
        client, whose only other sender is a shared poller, which an event-driven deployment may not run.
        """
        metrics = self._metrics
        if metrics is None or not (metrics.on and (final or metrics.due())):
            return
        connection = getattr(subscription.feed, "connection", None)  # the tests' in-memory feeds have none
        if connection is None:
            metrics.flush()
        else:
            metrics.flush(connection.client.metrics, connection.limiter)

    def _payload(
        self, allocations: Sequence[Allocation], polled_at: float | None, enterprise_id: str
    ) -> dict[str, Any]:
        return {
            "enterprise_id": enterprise_id,
            "oes_conn_id": self.trigger.oes_conn_id,
            "statuses": list(self.trigger.statuses or ()),
            "polled_at": None if polled_at is None else format_time(datetime.fromtimestamp(polled_at, timezone.utc)),
            "allocations": [a.to_json_dict() for a in allocations],
        }

    def _log_error(self, error: BaseException, logged: str | None) -> str:
        from airflow_provider_oes._retry import is_transient

        text = f"{type(error).__name__}: {error}"
        if is_transient(error):
            if text != logged:
                log.warning("%r: the change feed could not poll this time; it keeps trying: %s", self, text)
        else:
            # Loud every time (the feed retries these slowly): nothing is emitted until it is fixed.
            log.error(
                "%r: the OES API refuses the change feed (%s). No allocation events until this is fixed; "
                "the trigger keeps retrying slowly instead of ending.",
                self,
                text,
            )
        return text

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

    async def commit(self, commit: _Commit) -> None:
        """Airflow stored the item's event (or the item had none): write the window as it was after the item.

        :param commit: What the item carried.
        """
        if commit.snapshot is None or self._halted:
            return
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


def feed_query(query: EventQuery) -> Any:
    """The change-feed query a watcher reads: its filters, but both final statuses (see the class docstring).

    :param query: The watcher's filters.
    """
    from airflow_provider_oes.triggers._feed import FeedQuery

    return FeedQuery(
        statuses=FINAL_STATUSES, types=query.types, currencies=query.currencies, connection_ids=query.connection_ids
    )


def _feed_closed(feed: Any) -> bool:
    """True once the feed stopped (its task ended): a subscription to it gets nothing more."""
    return bool(feed.closed)


async def _open_feed_subscription(watcher: _Watcher) -> Any:
    """Subscribe to the loop's change feed for the watcher's connection, enterprise and query."""
    from airflow_provider_oes.triggers._feed import open_feed
    from airflow_provider_oes.triggers._poller import _connection

    trigger = watcher.trigger
    enterprise_id = trigger.enterprise_id
    if enterprise_id is None:
        from airflow_provider_oes._api import validate_enterprise_id
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        settings = (await _connection(trigger.oes_conn_id)).settings
        if settings.enterprise_id is None:
            raise OESInvalidRequestError(
                f"no enterprise id: pass enterprise_id to AllocationEventTrigger or set the 'enterprise_id' extra "
                f"of connection {trigger.oes_conn_id!r}"
            )
        enterprise_id = validate_enterprise_id(settings.enterprise_id)
    feed = await open_feed(trigger.oes_conn_id, enterprise_id, feed_query(trigger.query))
    return feed.subscribe(interval=trigger.poll_interval, since=watcher._since(float(feed.overlap)))


# ---------------------------------------------------------------------- metrics

_WATCHER_METRICS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], WatcherMetrics]] = (
    weakref.WeakKeyDictionary()
)


def _join_metrics(conn_id: str, enterprise_id: str) -> WatcherMetrics:
    """The metrics of the loop's watchers of a connection and enterprise, with one watcher more."""
    from airflow_provider_oes._metrics import WatcherMetrics

    groups = _WATCHER_METRICS.setdefault(asyncio.get_running_loop(), {})
    metrics = groups.get((conn_id, enterprise_id))
    if metrics is None:
        metrics = groups[(conn_id, enterprise_id)] = WatcherMetrics(conn_id, enterprise_id)
    metrics.watchers += 1
    return metrics


def _leave_metrics(metrics: WatcherMetrics | None) -> None:
    """One watcher fewer; the last one forgets the group (its final flush still sends the gauge at 0)."""
    if metrics is None:
        return
    metrics.watchers -= 1
    if metrics.watchers <= 0:
        # Found by identity, not through the running loop: a generator's cleanup may run after its loop stopped.
        for groups in list(_WATCHER_METRICS.values()):
            for key, found in list(groups.items()):
                if found is metrics:
                    del groups[key]


# ---------------------------------------------------------------------- shared-stream plumbing (Airflow 3.3)

_HANDOFFS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[StateStore | None]]] = (
    weakref.WeakKeyDictionary()
)


def _handoff_key(trigger: AllocationEventTrigger) -> str:
    return f"{trigger.fingerprint}/{trigger.poll_interval}"


def _handoffs() -> dict[str, asyncio.Future[StateStore | None]]:
    loop = asyncio.get_running_loop()
    found = _HANDOFFS.get(loop)
    if found is None:
        found = _HANDOFFS[loop] = {}
    return found


def _hand_over_store(key: str, store: StateStore | None) -> None:
    """The subscriber (the trigger instance Airflow gave the state store to) hands it to the producer."""
    handoffs = _handoffs()
    future = handoffs.get(key)
    if future is None or future.done():
        future = handoffs[key] = asyncio.get_running_loop().create_future()
    future.set_result(store)


async def _take_store(key: str) -> StateStore | None:
    """The producer waits for its subscriber's state store (Airflow builds the producer from kwargs only)."""
    handoffs = _handoffs()
    future = handoffs.setdefault(key, asyncio.get_running_loop().create_future())
    try:
        return await future
    finally:
        if handoffs.get(key) is future:
            del handoffs[key]


def _shared_stream_base() -> type:
    try:
        from airflow.triggers.shared_stream import SharedStreamProducer
    except ImportError:  # Airflow 3.2: the trigger refuses to be built there anyway
        return object
    return SharedStreamProducer


class _EventStreamProducer(_shared_stream_base()):  # type: ignore[misc]
    """Airflow 3.3 ack-mode producer: yields the watcher's items, writes the state in :meth:`advance`.

    Airflow calls :meth:`advance` with items whose trigger events it confirmed stored in its metadata DB, in
    order; only then is the state moved past them.
    """

    def __init__(self, trigger: AllocationEventTrigger, handoff_key: str) -> None:
        self.trigger = trigger
        self.handoff_key = handoff_key
        self.watcher: _Watcher | None = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        store = await _take_store(self.handoff_key)
        self.watcher = _Watcher(self.trigger, store, markers=True)
        async for item, commit in self.watcher.items():
            yield item, commit

    async def advance(self, batch: Sequence[Any]) -> None:
        watcher = self.watcher
        if watcher is None:
            return
        last: _Commit | None = None
        confirmed: list[str] = []
        for entry in batch:
            commit: _Commit | None = entry.broker_payload
            if not entry.outcome.is_clean:
                ids = ", ".join(commit.ids) if commit is not None and commit.ids else "none"
                watcher.halt(f"Airflow did not confirm storing an item (allocations: {ids}; {entry.outcome})")
                break
            if commit is not None:
                confirmed.extend(commit.ids)
                if commit.snapshot is not None:
                    last = commit
        if last is not None:
            # Items are confirmed in order: every id of the batch up to here is stored, not only the last item's.
            last = _Commit(last.snapshot, tuple(confirmed))
            try:
                await watcher.commit(last)
            except Exception:  # never end the group from here: the trigger would restart in a loop
                log.exception("%r: writing the state failed", watcher)

    async def aclose(self) -> None:
        return None
