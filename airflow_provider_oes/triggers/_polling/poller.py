"""The shared poller: one per resource, ``(connection, enterprise)`` and event loop, for every waiting trigger.

Triggers reach it through :func:`~airflow_provider_oes.triggers._polling.registry.register`.

It keeps the waiters, runs one strategy at a time (feed, id batches, single; a strategy's
:class:`~airflow_provider_oes.triggers._polling.strategy.Fallback` picks the next) and hands results to the
triggers. What differs between allocations and settlements is a
:class:`~airflow_provider_oes.triggers._polling.resource.Resource`. Design notes: ``docs/internals/poller.rst``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from airflow_provider_oes.exceptions import OESConnectionError, OESError
from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers._polling.checks import IdChecker
from airflow_provider_oes.triggers._polling.feed_strategy import FeedStrategy
from airflow_provider_oes.triggers._polling.id_batches import IdBatchStrategy
from airflow_provider_oes.triggers._polling.strategy import FEED, ID_BATCHES, SINGLE, strategy_label
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers._shared.waiters import Waiter, each_waiter, link, unlink

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._polling.registry import PollerRegistry
    from airflow_provider_oes.triggers._polling.resource import PollReporter, Resource
    from airflow_provider_oes.triggers._polling.strategy import PollStrategy, ResultSink
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._polling")

R = TypeVar("R")


class FailFastWaiter(Waiter):
    """A waiter whose wait also ends on a failure that is not final (``Resource.is_failing``)."""

    __slots__ = ()


class Poller(Generic[R]):
    """Polls every record of one resource waited for under one connection and enterprise.

    :param registry: The event loop's registry the poller removes itself from when idle.
    :param key: ``(conn_id, enterprise_id)``.
    :param resource: What it waits for.
    :param connection: The shared connection, if already acquired; otherwise the polling task acquires it first.
    """

    def __init__(
        self,
        registry: PollerRegistry,
        key: tuple[str, str],
        resource: Resource[R],
        connection: SharedConnection | None = None,
    ) -> None:
        self._registry = registry
        self.key = key
        self.enterprise_id = key[1]
        self.resource = resource
        self._conn: SharedConnection | None = None
        self.waiters: dict[str, Waiter] = {}
        """Record id -> the first trigger waiting for it (the others: :func:`each_waiter`)."""
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.sweeps = 0
        """Completed sweeps (each asks once about every waiting record)."""
        self.last_sweep_seconds = 0.0
        self.finished = 0
        """Records that got their event (a wait ended, or a permanent error)."""
        self.metrics: PollReporter = resource.reporter(key[0], key[1])
        """Events and gauges of this poller, sent every ``FLUSH_PERIOD`` seconds after a poll."""
        self._warned: dict[str, str] = {}
        """Record id -> the warning last logged about it (one per change, not one per sweep)."""
        self._kind = "pending"
        self._strategy: PollStrategy | None = None
        self._checker: IdChecker[R] | None = None
        if connection is not None:
            self._connected(connection)

    def _connected(self, connection: SharedConnection) -> None:
        self._conn = connection
        kind = connection.settings.strategy
        self._kind = ID_BATCHES if kind == FEED and not self.resource.has_feed else kind

    @property
    def strategy(self) -> str:
        """``feed``, ``id_batches`` or ``single``: the connection's choice until a fallback changes it
        (``pending`` until the connection is read)."""
        return self._kind

    @property
    def running_strategy(self) -> PollStrategy | None:
        """The strategy running now, while there is one."""
        return self._strategy

    @property
    def feed_strategy(self) -> FeedStrategy | None:
        """The running change-feed strategy, while there is one."""
        return self._strategy if isinstance(self._strategy, FeedStrategy) else None

    @property
    def connected(self) -> bool:
        """True once the poller has read its connection (its task does that first)."""
        return self._conn is not None

    @property
    def connection(self) -> SharedConnection:
        """The connection's shared HTTP client and rate limiter (see :attr:`connected`)."""
        if self._conn is None:
            raise RuntimeError(f"{self!r} has not read its connection yet")
        return self._conn

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.resource.name}, conn_id={self.key[0]!r}, enterprise_id={self.key[1]!r}, "
            f"waiting={len(self.waiters)})"
        )

    @property
    def batch_size(self) -> int:
        """Ids per list request: the connection's ``batch_size``, at most ``MAX_BATCH_SIZE``."""
        return self.connection.batch_size

    # ------------------------------------------------------------------ waiters

    def add(
        self, record_id: str, poll_interval: float, last_check: float | None = None, *, fail_fast: bool = False
    ) -> Waiter:
        """Wait for one record; start the polling task if it is not running.

        :param record_id: Validated record id (several triggers may wait for the same one).
        :param poll_interval: Seconds between checks.
        :param last_check: Server time (epoch s) at which it was last seen not final, if known.
        :param fail_fast: End this wait on a failure that is not final too.
        """
        if self._stopped:  # pragma: no cover - register() never hands out a stopped poller
            raise RuntimeError("this poller has stopped")
        future = asyncio.get_running_loop().create_future()
        waiter = (FailFastWaiter if fail_fast else Waiter)(record_id, poll_interval, future, last_check, self)
        link(self.waiters, waiter)
        _gc.added()
        if self._strategy is not None:
            self._strategy.added(record_id, last_check)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"oes-{self.resource.name}-poller-{self.key[0]}-{self.enterprise_id}"
            )
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Stop waiting (the trigger got its event or was cancelled); stop the poller if nobody is left."""
        if unlink(self.waiters, waiter):
            _gc.left()
            if self._warned and waiter.allocation_id not in self.waiters:
                self._warned.pop(waiter.allocation_id, None)
        if not waiter.future.done():
            waiter.future.cancel()
        if not self.waiters and self._task is not None and not self._stopped:
            # Nobody is waiting: stop now, even mid-sweep or while queued behind the rate limiter. Leave the
            # registry at once so a trigger arriving meanwhile starts a fresh poller instead of joining this one.
            self._detach()
            self._task.cancel()

    # ------------------------------------------------------------------ results (the strategies' sink)

    def observe(self, record_id: str, record: R) -> None:
        """A record was read: wake the triggers whose wait it ends; warn (once per change) about what it does not."""
        resource = self.resource
        if resource.is_final(record):
            self.finish(record_id, resource.event(record, self.enterprise_id), record)
            return
        if resource.is_failing(record) and self._fails_fast(record_id):
            self.finish(record_id, resource.event(record, self.enterprise_id), record, fail_fast_only=True)
        if record_id in self.waiters:
            warning = resource.warning(record)
            if warning is None:
                if self._warned:
                    self._warned.pop(record_id, None)
            elif self._warned.get(record_id) != warning:
                self._warned[record_id] = warning
                log.warning("%s", warning)

    def ends_a_wait(self, record_id: str, record: R) -> bool:
        """Whether ``record`` ends the wait of some trigger waiting for ``record_id``."""
        resource = self.resource
        if resource.is_final(record):
            return True
        return resource.is_failing(record) and self._fails_fast(record_id)

    def _fails_fast(self, record_id: str) -> bool:
        return any(isinstance(w, FailFastWaiter) for w in each_waiter(self.waiters.get(record_id)))

    def finish(
        self, record_id: str, event: dict[str, Any], record: R | None = None, *, fail_fast_only: bool = False
    ) -> None:
        """Hand ``event`` to every trigger waiting for ``record_id`` (``record``: the one it carries, if known;
        ``fail_fast_only``: only to the triggers that asked to fail fast, the others keep waiting)."""
        first = self.waiters.get(record_id)
        if first is None:
            return
        ending: Iterable[Waiter]
        if fail_fast_only:
            ending = [w for w in each_waiter(first) if isinstance(w, FailFastWaiter)]
            if not ending:
                return
            for waiter in ending:
                unlink(self.waiters, waiter)
        else:
            del self.waiters[record_id]
            ending = each_waiter(first)
        self.finished += 1
        metrics = self.metrics
        if metrics.on:  # one call; a status's str() is left to the flush
            resource = self.resource
            metrics.event(*(resource.payload_metric(event) if record is None else resource.event_metric(record)))
        if self._warned and record_id not in self.waiters:
            self._warned.pop(record_id, None)
        for waiter in ending:
            _gc.left()
            if not waiter.future.done():
                waiter.future.set_result(event)

    def polled(self, sweep_seconds: float | None = None) -> None:
        """A poll is over (``sweep_seconds``: a sweep over every waiter, and how long it took)."""
        if sweep_seconds is not None:
            self.sweeps += 1
            self.last_sweep_seconds = sweep_seconds
        self.flush_metrics()
        _gc.after_poll()

    def flush_metrics(self, final: bool = False) -> None:
        """Send the gathered metrics and the gauges, every ``FLUSH_PERIOD`` seconds, and when stopping."""
        metrics = self.metrics
        if metrics.on and (final or metrics.due()):
            connection = self.connection
            metrics.waiting = 0 if final else len(self.waiters)
            # The client's request metrics too: they are the connection's, whichever of its pollers sends them.
            metrics.flush(connection.client.metrics, connection.limiter)

    # ------------------------------------------------------------------ lifecycle

    def _make_strategy(self, kind: str) -> PollStrategy:
        connection = self.connection
        if self._checker is None:  # one for the poller's life: what it learnt of the list endpoint stays
            self._checker = IdChecker(connection.client, self)
        checker = self._checker
        if kind == FEED:  # only for a resource with a feed (allocations)
            return FeedStrategy(
                cast("ResultSink[Allocation]", self),
                cast("IdChecker[Allocation]", checker),
                self.metrics,
                batch_size=self.batch_size,
                reconcile_interval=connection.settings.reconcile_interval,
            )
        return IdBatchStrategy(self, checker, connection.client, self.batch_size, single=kind == SINGLE)

    async def _run(self) -> None:
        try:
            if self._conn is None:
                try:
                    self._connected(await connections.acquire(self.key[0]))
                except OESError as exc:
                    # What each trigger got from register() before the poller read the connection: its event.
                    self._detach()  # the next trigger to register reads the connection again
                    for record_id in list(self.waiters):
                        self.finish(record_id, self.resource.error_event(exc, record_id))
                    return
            else:
                self.connection.retain()
            settings = self.connection.settings
            log.info(
                "OES %s poller started for connection %r, enterprise %r: %s, at most %d requests per %g s",
                self.resource.name,
                self.key[0],
                self.enterprise_id,
                f"batches of {self.batch_size} ids per list request"
                if self._kind == ID_BATCHES
                else strategy_label(self._kind, self.resource.name),
                settings.rate_limit_requests,
                settings.rate_limit_period,
            )
            while self.waiters:
                self._strategy = self._make_strategy(self._kind)
                decision = await self._strategy.run()
                self._strategy = None
                if decision is None:
                    break
                log.warning(
                    "OES poller %r/%r: %s. Switching to %s for this poller.",
                    self.key[0],
                    self.enterprise_id,
                    decision.reason,
                    strategy_label(decision.kind, self.resource.name),
                )
                self._kind = decision.kind
        except Exception as exc:
            # A bug here must not leave triggers waiting forever: fail them with the reason.
            name = self.resource.name
            log.exception("The OES %s poller for %r stopped unexpectedly", name, self.key)
            error = OESConnectionError(f"the OES {name} poller for enterprise {self.enterprise_id!r} failed: {exc!r}")
            for record_id in list(self.waiters):
                self.finish(record_id, self.resource.error_event(error, record_id))
        finally:
            self._strategy = None
            await self._stop()

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
        self.flush_metrics(final=True)
        await connections.release(self.key[0], self._conn)
