"""The shared poller behind :class:`~airflow_provider_oes.triggers.allocation.AllocationStatusTrigger`.

A triggerer runs thousands of triggers in one event loop. Polling once per trigger would cost one request
per allocation per interval, and BitGo allows an authenticated user 360 requests per 60 s. So, per event
loop:

* **one connection** (:class:`_Connection`) per Airflow connection id: one
  :class:`~airflow_provider_oes.hooks.async_client.OESAsyncClient` (one HTTP connection pool) and one
  :class:`~airflow_provider_oes._rate_limit.RateLimiter`, shared by every trigger that uses that connection id;
* **one poller** (:class:`AllocationPoller`) per ``(connection id, enterprise id)``: triggers register the
  allocation they wait for and await a future. Once per poll interval the poller asks the list endpoint
  for ``batch_size`` ids at a time (``allocationIds=a,b,c``), resolves the future of every allocation that
  turned ``cleared`` or ``released``, confirms ids missing from the list with the single GET, and keeps the
  rest waiting. With the connection's ``batching`` extra off it sends one single GET per allocation instead.

Every HTTP attempt, retries included, first waits for the connection's rate limiter (a sliding
window: never more than ``rate_limit_requests`` in any ``rate_limit_period`` seconds). A 429 holds the whole
connection back for its ``Retry-After`` (or a backoff) and lowers its rate until several processes sharing
the token fit under BitGo's limit (``_rate_limit.AdaptiveLimit``). When the limit does not allow a full sweep per
interval, sweeps simply take longer: every allocation is still checked once per sweep, in order.

Lifecycle: the first trigger of a key starts its poller task; when the last trigger of a poller leaves
(event delivered or trigger cancelled) the poller stops, and when the last poller of a connection stops the
connection's HTTP client is closed. Nothing is shared between event loops (``dag.test()`` runs each
trigger in a fresh loop; a new triggerer process starts afresh).
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_oes import _metrics
from airflow_provider_oes._api import parse_allocation_record
from airflow_provider_oes._rate_limit import RateLimiter
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESConnectionError, OESError, OESInvalidRequestError
from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers._events import TERMINAL, error_event, terminal_event

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes.hooks.async_client import ListPage, OESAsyncClient
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._feed_strategy import FeedStrategy

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 200
"""Ids per list request are capped here: 200 UUIDs keep the request line under 8 kB, a common proxy limit."""
CONCURRENCY = 8
"""Requests one connection has in flight at once (the rate limiter still decides how many per window)."""
LIST_REJECTED_STATUS_CODES = frozenset({400, 404, 405, 501})
"""A list request answered with one of these means the list endpoint itself is not usable: use single GETs."""


@dataclass
class _Connection:
    """What all pollers of one Airflow connection share in one event loop."""

    settings: OESConnectionSettings
    client: OESAsyncClient
    limiter: RateLimiter
    pollers: int = 0


class Registration:
    """One trigger waiting for one allocation, and its handle on the shared poller.

    Await :meth:`wait`, and always :meth:`cancel` afterwards. One object per waiting trigger (100,000 of them
    in a big triggerer), so it is the waiter itself, with ``__slots__``: no separate handle, no ``__dict__``,
    and :meth:`wait` hands out the future rather than a coroutine wrapping it (each of those was one more
    object per trigger for the garbage collector to walk and for RSS to hold). For the same reason the poller
    keeps no list per allocation: it maps each allocation to one waiter, and the rare other triggers waiting
    for the same allocation hang off it through :attr:`next_waiter` (see :func:`each_waiter`).
    """

    __slots__ = ("allocation_id", "future", "last_check", "next_waiter", "poll_interval", "poller")

    def __init__(
        self,
        allocation_id: str,
        poll_interval: float,
        future: asyncio.Future[dict[str, Any]],
        last_check: float | None = None,
        poller: AllocationPoller | None = None,
    ) -> None:
        self.allocation_id = allocation_id
        self.poll_interval = poll_interval
        self.future = future
        self.last_check = last_check
        """Server time (epoch s) at which the allocation was last seen not final; ``None``: unknown."""
        self.poller = poller
        self.next_waiter: Registration | None = None
        """Another trigger waiting for the same allocation (the poller's chain; ``None`` for almost all)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(allocation_id={self.allocation_id!r}, last_check={self.last_check!r})"

    def wait(self) -> asyncio.Future[dict[str, Any]]:
        """Await it: the event payload, once the allocation is final or a permanent error was seen."""
        return self.future

    def cancel(self) -> None:
        """Leave the poller (idempotent). Synchronous, so it also works in a cancelled coroutine's ``finally``."""
        if self.poller is not None:
            self.poller.remove(self)


_Waiter = Registration
"""The poller's name for a registration: one trigger waiting for one allocation."""


def each_waiter(first: _Waiter | None) -> Iterator[_Waiter]:
    """Every trigger waiting for one allocation: ``first`` (what :attr:`AllocationPoller.waiters` maps it to)
    and the chain behind it.

    :param first: The allocation's entry in :attr:`AllocationPoller.waiters`, or ``None``.
    """
    waiter = first
    while waiter is not None:
        # Read the link before handing the waiter out: a consumer may remove it from the chain meanwhile.
        following = waiter.next_waiter
        yield waiter
        waiter = following


def smallest_interval(waiters: dict[str, _Waiter]) -> float:
    """The smallest poll interval any waiting trigger asked for (the pace of the poller; ``inf`` when none).

    :param waiters: :attr:`AllocationPoller.waiters`.
    """
    smallest = math.inf
    for first in waiters.values():
        waiter: _Waiter | None = first
        while waiter is not None:  # a loop, not each_waiter(): it runs over 100,000 waiters each interval
            if waiter.poll_interval < smallest:
                smallest = waiter.poll_interval
            waiter = waiter.next_waiter
    return smallest


@dataclass
class _LoopRegistry:
    """The pollers and connections of one event loop."""

    connections: dict[str, _Connection] = field(default_factory=dict)
    pollers: dict[tuple[str, str], AllocationPoller] = field(default_factory=dict)
    connection_locks: dict[str, asyncio.Lock] = field(default_factory=dict)


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRegistry] = weakref.WeakKeyDictionary()


def _registry() -> _LoopRegistry:
    loop = asyncio.get_running_loop()
    registry = _REGISTRIES.get(loop)
    if registry is None:
        registry = _REGISTRIES[loop] = _LoopRegistry()
    return registry


def get_poller(conn_id: str, enterprise_id: str) -> AllocationPoller | None:
    """The running poller of this event loop for a connection and enterprise, if any (for tests and logs).

    :param conn_id: Airflow connection id.
    :param enterprise_id: Enterprise id.
    """
    return _registry().pollers.get((conn_id, enterprise_id))


def active_clients() -> dict[str, OESAsyncClient]:
    """The open HTTP clients of this event loop, by connection id (for tests)."""
    return {conn_id: conn.client for conn_id, conn in _registry().connections.items()}


async def _connection(conn_id: str) -> _Connection:
    """The shared connection of this loop for ``conn_id``, created on first use (one lookup, one client)."""
    registry = _registry()
    existing = registry.connections.get(conn_id)
    if existing is not None:
        return existing
    lock = registry.connection_locks.setdefault(conn_id, asyncio.Lock())
    async with lock:
        existing = registry.connections.get(conn_id)
        if existing is not None:
            return existing
        settings = await _load_settings(conn_id)
        from airflow_provider_oes.hooks.async_client import OESAsyncClient

        limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_period)
        client = OESAsyncClient(settings, gate=limiter, max_connections=CONCURRENCY)
        connection = registry.connections[conn_id] = _Connection(settings, client, limiter)
        if settings.strategy != "single" and settings.batch_size > MAX_BATCH_SIZE:
            log.warning(
                "Connection %r asks for batches of %d allocation ids; using %d per request so the request "
                "line stays under 8 kB.",
                conn_id,
                settings.batch_size,
                MAX_BATCH_SIZE,
            )
        return connection


async def release_connection(conn_id: str, connection: _Connection) -> None:
    """One user of the connection (a poller or a change feed) is done; the last one closes its HTTP client."""
    connection.pollers -= 1
    if connection.pollers == 0:
        registry = _registry()
        if registry.connections.get(conn_id) is connection:
            del registry.connections[conn_id]
        await connection.client.aclose()


async def _load_settings(conn_id: str) -> OESConnectionSettings:
    """Read the connection with the async lookup (the sync one can deadlock the triggerer's loop)."""
    from airflow.sdk import BaseHook

    from airflow_provider_oes._settings import OESConnectionSettings

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except Exception as exc:
        raise OESInvalidRequestError(
            f"could not read the Airflow connection {conn_id!r}: {type(exc).__name__}: {exc}"
        ) from None
    return OESConnectionSettings.from_connection(conn)


async def register(
    conn_id: str, enterprise_id: str, allocation_id: str, poll_interval: float, last_check: float | None = None
) -> Registration:
    """Add one waiting allocation to the shared poller of its connection and enterprise (starting it if needed).

    Never suspends: the poller's task reads the connection, once, for every trigger that registered meanwhile.
    (100,000 triggers starting together, each waiting its turn on the connection lock with its own chain of
    coroutine frames, cost about 2.7 kB each at that moment: the peak RSS of a large triggerer.) When the
    connection cannot be read, every waiting trigger gets that error as its event.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param allocation_id: Validated allocation id.
    :param poll_interval: Seconds between checks wanted by this trigger (the poller uses the smallest).
    :param last_check: Server time (epoch s) at which the allocation was last seen not final, if known.
    """
    registry = _registry()
    key = (conn_id, enterprise_id)
    poller = registry.pollers.get(key)
    if poller is None:
        poller = registry.pollers[key] = AllocationPoller(registry, key)
    return poller.add(allocation_id, poll_interval, last_check)


class AllocationPoller:
    """Polls every allocation waited for under one connection and enterprise, in batches, once per interval.

    :param registry: The event loop's registry the poller removes itself from when idle.
    :param key: ``(conn_id, enterprise_id)``.
    :param connection: The shared client and rate limiter of the connection, if already read; otherwise the
        polling task reads it first.
    """

    def __init__(self, registry: _LoopRegistry, key: tuple[str, str], connection: _Connection | None = None) -> None:
        self._registry = registry
        self.key = key
        self.enterprise_id = key[1]
        self._conn: _Connection | None = None
        self.waiters: dict[str, _Waiter] = {}
        """Allocation id -> the first trigger waiting for it (the others: :func:`each_waiter`)."""
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.sweeps = 0
        """Completed sweeps (each asks once about every waiting allocation)."""
        self.last_sweep_seconds = 0.0
        self.finished = 0
        """Allocations that got their event (final status or permanent error)."""
        self.metrics = _metrics.PollerMetrics(key[0], key[1])
        """Events and gauges of this poller, sent after a sweep every 20 s (see :mod:`airflow_provider_oes._metrics`)."""
        self.strategy = "pending"
        """``feed``, ``id_batches`` or ``single``: the connection's choice, until a fallback changes it
        (``pending`` until the connection is read)."""
        self.feed_strategy: FeedStrategy | None = None
        """The running change-feed strategy, while ``strategy == "feed"``."""
        if connection is not None:
            self._connected(connection)

    def _connected(self, connection: _Connection) -> None:
        self._conn = connection
        connection.pollers += 1
        self.strategy = connection.settings.strategy

    @property
    def connected(self) -> bool:
        """True once the poller has read its connection (its task does that first)."""
        return self._conn is not None

    @property
    def connection(self) -> _Connection:
        """The connection's shared HTTP client and rate limiter (see :attr:`connected`)."""
        if self._conn is None:
            raise RuntimeError(f"{self!r} has not read its connection yet")
        return self._conn

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.key[0]!r}, enterprise_id={self.key[1]!r}, waiting={len(self.waiters)})"

    @property
    def batch_size(self) -> int:
        """Ids per list request: the connection's ``batch_size``, at most :data:`MAX_BATCH_SIZE`."""
        return min(self.connection.settings.batch_size, MAX_BATCH_SIZE)

    def add(self, allocation_id: str, poll_interval: float, last_check: float | None = None) -> _Waiter:
        """Wait for one allocation; start the polling task if it is not running.

        :param allocation_id: Validated allocation id (several triggers may wait for the same one).
        :param poll_interval: Seconds between checks.
        :param last_check: Server time (epoch s) at which it was last seen not final, if known.
        """
        if self._stopped:  # pragma: no cover - register() never hands out a stopped poller
            raise RuntimeError("this poller has stopped")
        waiter = _Waiter(allocation_id, poll_interval, asyncio.get_running_loop().create_future(), last_check, self)
        first = self.waiters.get(allocation_id)
        if first is not None:  # rare: another trigger waits for this allocation already
            waiter.next_waiter = first
        self.waiters[allocation_id] = waiter
        _gc.added()
        if self.feed_strategy is not None:
            self.feed_strategy.added(allocation_id, last_check)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"oes-poller-{self.key[0]}-{self.enterprise_id}"
            )
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        """Stop waiting (the trigger got its event or was cancelled); wake the poller if nobody is left.

        :param waiter: What :meth:`add` returned.
        """
        if self._unlink(waiter):
            _gc.left()
        if not waiter.future.done():
            waiter.future.cancel()
        if not self.waiters and self._task is not None and not self._stopped:
            # Nobody is waiting: stop now, even mid-sweep or while queued behind the rate limiter. Leave the
            # registry at once so a trigger arriving meanwhile starts a fresh poller instead of joining this one.
            self._detach()
            self._task.cancel()

    def _unlink(self, waiter: _Waiter) -> bool:
        """Take ``waiter`` out of :attr:`waiters`; False when it is not there (its allocation was finished)."""
        first = self.waiters.get(waiter.allocation_id)
        if first is waiter:
            if waiter.next_waiter is None:
                del self.waiters[waiter.allocation_id]
            else:
                self.waiters[waiter.allocation_id] = waiter.next_waiter
            return True
        # Its own link stays as it is: whoever is walking the chain right now must still reach the rest.
        before = first
        while before is not None:
            if before.next_waiter is waiter:
                before.next_waiter = waiter.next_waiter
                return True
            before = before.next_waiter
        return False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._conn is None:
                try:
                    self._connected(await _connection(self.key[0]))
                except OESError as exc:
                    # What each trigger got from register() before the poller read the connection: its event.
                    self._detach()  # the next trigger to register reads the connection again
                    for allocation_id in list(self.waiters):
                        self._finish(allocation_id, error_event(exc, allocation_id))
                    return
            settings = self.connection.settings
            log.info(
                "OES poller started for connection %r, enterprise %r: %s, at most %d requests per %g s",
                self.key[0],
                self.enterprise_id,
                {
                    "feed": "the enterprise's change feed",
                    "id_batches": f"batches of {self.batch_size} ids per list request",
                }.get(self.strategy, "one GET per allocation"),
                settings.rate_limit_requests,
                settings.rate_limit_period,
            )
            if self.strategy == "feed":
                from airflow_provider_oes.triggers._feed_strategy import FeedStrategy

                self.feed_strategy = FeedStrategy(self)
                try:
                    fall_back = await self.feed_strategy.run()
                finally:
                    self.feed_strategy = None
                if fall_back:
                    self.strategy = "id_batches"
            while self.waiters:
                started = loop.time()
                waiting = len(self.waiters)
                sent_before = self.connection.client.requests_sent
                finished_before = self.finished
                await self._sweep()
                self.sweeps += 1
                self.last_sweep_seconds = loop.time() - started
                # One line per sweep: shows operators the batching at work (requests vs allocations).
                log.info(
                    "OES poller %r/%r: checked %d allocations with %d requests in %.2f s; %d became final",
                    self.key[0],
                    self.enterprise_id,
                    waiting,
                    self.connection.client.requests_sent - sent_before,
                    self.last_sweep_seconds,
                    self.finished - finished_before,
                )
                self._flush_metrics(len(self.waiters))
                _gc.after_poll()
                if not self.waiters:
                    break
                interval = smallest_interval(self.waiters)
                delay = started + interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        except Exception as exc:
            # A bug here must not leave triggers waiting forever: fail them with the reason.
            log.exception("The OES poller for %r stopped unexpectedly", self.key)
            error = OESConnectionError(f"the OES poller for enterprise {self.enterprise_id!r} failed: {exc!r}")
            for allocation_id in list(self.waiters):
                self._finish(allocation_id, error_event(error, allocation_id))
        finally:
            await self._stop()

    def _flush_metrics(self, waiting: int, final: bool = False) -> None:
        """Send the gathered metrics and the gauges, every ``FLUSH_PERIOD`` seconds, and when stopping."""
        if self.metrics.on and (final or self.metrics.due()):
            connection = self.connection
            # The client's request metrics too: they are the connection's, whichever of its pollers sends them.
            connection.client.metrics.flush()
            limiter = connection.limiter
            # An adaptive limiter (lowered by 429s) tells its current allowance; a fixed one has none to tell.
            adaptive = getattr(limiter, "adaptive", None)
            rate = adaptive.current() if adaptive is not None else None
            self.metrics.flush(waiting, in_window=limiter.in_window(), limit=limiter.max_requests, rate=rate)

    def _detach(self) -> None:
        self._stopped = True
        if self._registry.pollers.get(self.key) is self:
            del self._registry.pollers[self.key]

    async def _stop(self) -> None:
        # Leave the registry before the first await, so that no trigger can join a poller that is stopping.
        self._detach()
        for first in self.waiters.values():
            for waiter in each_waiter(first):
                waiter.future.cancel()
                _gc.left()
        self.waiters.clear()
        if self._conn is None:  # cancelled, or failed, before the connection was read: nothing to release
            return
        # Last word: the events of the final sweep, and nothing waiting any more (a gauge keeps its last value).
        self._flush_metrics(0, final=True)
        await release_connection(self.key[0], self._conn)

    async def _sweep(self) -> None:
        """Ask once about every allocation waited for now."""
        ids = list(self.waiters)
        if self.strategy != "single":
            size = self.batch_size
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            await _bounded(batches, self._poll_batch, CONCURRENCY)
        else:
            await _bounded(ids, self._poll_one, CONCURRENCY)

    async def _poll_batch(self, batch: list[str]) -> None:
        batch = [i for i in batch if i in self.waiters]  # some may have left while earlier batches ran
        if not batch:
            return
        if self.strategy == "single":  # switched while this sweep ran
            for allocation_id in batch:
                await self._poll_one(allocation_id)
            return
        page, rejected = await self._list_ids(batch)
        if rejected is not None:
            # The list endpoint itself is not usable here: one GET each still works (and a real
            # "no such allocation" or "no such enterprise" then reaches only the allocations it concerns).
            if self.strategy != "single":
                self.strategy = "single"
                log.warning(
                    "OES poller %r/%r: the list endpoint rejected a check by ids (%s); switching to one GET "
                    "per allocation for this poller.",
                    self.key[0],
                    self.enterprise_id,
                    rejected,
                )
            for allocation_id in batch:
                await self._poll_one(allocation_id)
            return
        if page is None:
            return
        seen = self._apply_records(batch, page.records)
        missing = [allocation_id for allocation_id in batch if allocation_id not in seen]
        for allocation_id in missing:
            # Not in the list: confirm with the single GET (a 404 there is a real "no such allocation").
            await self._poll_one(allocation_id)

    async def _list_ids(self, batch: list[str]) -> tuple[ListPage | None, OESError | None]:
        """One list request for the ids of ``batch``, its failures handled as every check by ids handles them.

        :return: ``(page, None)`` with the answer (nothing applied yet); ``(None, None)`` when there is nothing
            more to do now: a transient failure (logged; the ids are checked again later) or a permanent error
            (handed to every waiter of the batch); ``(None, error)`` when the list endpoint itself rejected the
            request (:data:`LIST_REJECTED_STATUS_CODES`): the caller checks the ids one GET each.
        """
        try:
            page = await self.connection.client.list_allocations_page(
                self.enterprise_id, allocation_ids=batch, page_size=len(batch)
            )
        except OESError as exc:
            if is_transient(exc):
                log.warning(
                    "Could not check %d allocations of enterprise %r this time, will try again: %s",
                    len(batch),
                    self.enterprise_id,
                    exc,
                )
                return None, None
            if exc.status_code in LIST_REJECTED_STATUS_CODES:
                return None, exc
            for allocation_id in batch:
                self._finish(allocation_id, error_event(exc, allocation_id))
            return None, None
        return page, None

    def _apply_records(self, batch: list[str], records: list[Any]) -> set[str]:
        """Wake the waiters of ``batch`` whose record in ``records`` is final; return the ids found in them."""
        wanted = {allocation_id.lower(): allocation_id for allocation_id in batch}
        seen: set[str] = set()
        for record in records:
            record_id = record.get("id") if isinstance(record, dict) else None
            asked = wanted.get(record_id.lower()) if isinstance(record_id, str) else None
            if asked is None:
                continue  # not one we asked for (or no usable id): the single GET below settles ours
            seen.add(asked)
            try:
                allocation = parse_allocation_record(record, allocation_id=asked, enterprise_id=self.enterprise_id)
            except OESError as exc:
                self._finish(asked, error_event(exc, asked))
                continue
            self._observe(asked, allocation)
        return seen

    async def _poll_one(self, allocation_id: str) -> float | None:
        """Check one waiting allocation with the single GET; return the server time of the answer, if any.

        ``None`` when it was not checked (nobody waits for it any more, a transient failure: checked again
        later), when a permanent error ended its waiters, or when the answer carried no ``Date``.
        """
        if allocation_id not in self.waiters:
            return None
        try:
            allocation, server_time = await self.connection.client.get_allocation_at(allocation_id, self.enterprise_id)
        except OESError as exc:
            if is_transient(exc):
                log.warning("Could not check allocation %s this time, will try again: %s", allocation_id, exc)
                return None
            self._finish(allocation_id, error_event(exc, allocation_id))
            return None
        self._observe(allocation_id, allocation)
        return server_time

    def _observe(self, allocation_id: str, allocation: Allocation) -> None:
        if allocation.is_terminal:
            self._finish(allocation_id, terminal_event(allocation, self.enterprise_id), allocation)
        elif not allocation.has_known_status:
            log.warning(
                "Allocation %s has status %r, which this provider does not know; it is not treated as final. "
                "Still waiting.",
                allocation_id,
                allocation.status,
            )

    def _finish(self, allocation_id: str, event: dict[str, Any], allocation: Allocation | None = None) -> None:
        """Hand ``event`` to every trigger waiting for ``allocation_id`` (``allocation``: the final one, if known)."""
        if allocation_id in self.waiters:
            self.finished += 1
            metrics = self.metrics
            if metrics.on:
                if allocation is not None:  # the usual way: one call, the status's str() left to the flush
                    metrics.event(allocation.status, allocation.updated_at)
                else:
                    self._count_event(event)
        for waiter in each_waiter(self.waiters.pop(allocation_id, None)):
            _gc.left()
            if not waiter.future.done():
                waiter.future.set_result(event)

    def _count_event(self, event: dict[str, Any]) -> None:
        """Count an event handed over without its Allocation: an error, or a final status read from the payload."""
        if event.get("status") != TERMINAL:
            self.metrics.event("error")
            return
        record = event.get("allocation")
        record = record if isinstance(record, dict) else {}
        self.metrics.event(str(record.get("status")), _parse_time(record.get("updatedAt")))


def _parse_time(value: object) -> datetime | None:
    """An API timestamp (``2025-11-01T10:05:00.000Z``) as an aware datetime; ``None`` if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


async def _bounded(items: Iterable[Any], fn: Callable[[Any], Awaitable[object]], concurrency: int) -> None:
    """Run ``fn`` over ``items`` with at most ``concurrency`` calls in flight (workers, not one task per item)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:  # a shared iterator: each item goes to exactly one worker
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
