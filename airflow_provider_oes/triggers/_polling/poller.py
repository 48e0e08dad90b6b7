"""The shared poller: one per ``(connection, enterprise)`` and event loop, for every waiting trigger.

It keeps the waiters, runs one strategy at a time (feed, id batches, single; a strategy's
:class:`~airflow_provider_oes.triggers._polling.strategy.Fallback` picks the next) and hands results to the
triggers. Design notes: ``docs/internals/poller.rst``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._metrics import PollerMetrics
from airflow_provider_oes._time import parse_aware_datetime
from airflow_provider_oes.exceptions import OESConnectionError, OESError
from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers._events import TERMINAL, error_event, terminal_event
from airflow_provider_oes.triggers._polling.checks import IdChecker
from airflow_provider_oes.triggers._polling.feed_strategy import FeedStrategy
from airflow_provider_oes.triggers._polling.id_batches import IdBatchStrategy
from airflow_provider_oes.triggers._polling.strategy import FEED, SINGLE, STRATEGY_LABELS
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal
from airflow_provider_oes.triggers._shared.waiters import Waiter, each_waiter, link, unlink

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._polling.strategy import PollStrategy
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._polling")


@dataclass
class PollerRegistry:
    """The pollers of one event loop, by ``(conn_id, enterprise_id)``."""

    pollers: dict[tuple[str, str], AllocationPoller] = field(default_factory=dict)


_registry: LoopLocal[PollerRegistry] = LoopLocal(PollerRegistry)


def running_pollers() -> dict[tuple[str, str], AllocationPoller]:
    """The pollers of this event loop by ``(conn_id, enterprise_id)`` (for tests and logs)."""
    return _registry.get().pollers


def get_poller(conn_id: str, enterprise_id: str) -> AllocationPoller | None:
    """The running poller of this event loop for a connection and enterprise, if any (for tests and logs)."""
    return _registry.get().pollers.get((conn_id, enterprise_id))


async def register(
    conn_id: str, enterprise_id: str, allocation_id: str, poll_interval: float, last_check: float | None = None
) -> Waiter:
    """Add one waiting allocation to the shared poller of its connection and enterprise (starting it if needed).

    Never suspends: the poller's task reads the connection once for every trigger that registered meanwhile.
    When the connection cannot be read, every waiting trigger gets that error as its event.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param allocation_id: Validated allocation id.
    :param poll_interval: Seconds between checks wanted by this trigger (the poller uses the smallest).
    :param last_check: Server time (epoch s) at which the allocation was last seen not final, if known.
    """
    registry = _registry.get()
    key = (conn_id, enterprise_id)
    poller = registry.pollers.get(key)
    if poller is None:
        poller = registry.pollers[key] = AllocationPoller(registry, key)
    return poller.add(allocation_id, poll_interval, last_check)


class AllocationPoller:
    """Polls every allocation waited for under one connection and enterprise.

    :param registry: The event loop's registry the poller removes itself from when idle.
    :param key: ``(conn_id, enterprise_id)``.
    :param connection: The shared connection, if already acquired; otherwise the polling task acquires it first.
    """

    def __init__(
        self, registry: PollerRegistry, key: tuple[str, str], connection: SharedConnection | None = None
    ) -> None:
        self._registry = registry
        self.key = key
        self.enterprise_id = key[1]
        self._conn: SharedConnection | None = None
        self.waiters: dict[str, Waiter] = {}
        """Allocation id -> the first trigger waiting for it (the others: :func:`each_waiter`)."""
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.sweeps = 0
        """Completed sweeps (each asks once about every waiting allocation)."""
        self.last_sweep_seconds = 0.0
        self.finished = 0
        """Allocations that got their event (final status or permanent error)."""
        self.metrics = PollerMetrics(key[0], key[1])
        """Events and gauges of this poller, sent every ``FLUSH_PERIOD`` seconds after a poll."""
        self._kind = "pending"
        self._strategy: PollStrategy | None = None
        self._checker: IdChecker | None = None
        if connection is not None:
            self._connected(connection)

    def _connected(self, connection: SharedConnection) -> None:
        self._conn = connection
        self._kind = connection.settings.strategy

    @property
    def strategy(self) -> str:
        """``feed``, ``id_batches`` or ``single``: the connection's choice until a fallback changes it
        (``pending`` until the connection is read)."""
        return self._kind

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
        return f"{type(self).__name__}(conn_id={self.key[0]!r}, enterprise_id={self.key[1]!r}, waiting={len(self.waiters)})"

    @property
    def batch_size(self) -> int:
        """Ids per list request: the connection's ``batch_size``, at most ``MAX_BATCH_SIZE``."""
        return self.connection.batch_size

    # ------------------------------------------------------------------ waiters

    def add(self, allocation_id: str, poll_interval: float, last_check: float | None = None) -> Waiter:
        """Wait for one allocation; start the polling task if it is not running.

        :param allocation_id: Validated allocation id (several triggers may wait for the same one).
        :param poll_interval: Seconds between checks.
        :param last_check: Server time (epoch s) at which it was last seen not final, if known.
        """
        if self._stopped:  # pragma: no cover - register() never hands out a stopped poller
            raise RuntimeError("this poller has stopped")
        waiter = Waiter(allocation_id, poll_interval, asyncio.get_running_loop().create_future(), last_check, self)
        link(self.waiters, waiter)
        _gc.added()
        if self._strategy is not None:
            self._strategy.added(allocation_id, last_check)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"oes-poller-{self.key[0]}-{self.enterprise_id}"
            )
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Stop waiting (the trigger got its event or was cancelled); stop the poller if nobody is left."""
        if unlink(self.waiters, waiter):
            _gc.left()
        if not waiter.future.done():
            waiter.future.cancel()
        if not self.waiters and self._task is not None and not self._stopped:
            # Nobody is waiting: stop now, even mid-sweep or while queued behind the rate limiter. Leave the
            # registry at once so a trigger arriving meanwhile starts a fresh poller instead of joining this one.
            self._detach()
            self._task.cancel()

    # ------------------------------------------------------------------ results (the strategies' sink)

    def observe(self, allocation_id: str, allocation: Allocation) -> None:
        """An allocation was read: wake its waiters if it is final; warn about a status this provider does not know."""
        if allocation.is_terminal:
            self.finish(allocation_id, terminal_event(allocation, self.enterprise_id), allocation)
        elif not allocation.has_known_status:
            log.warning(
                "Allocation %s has status %r, which this provider does not know; it is not treated as final. "
                "Still waiting.",
                allocation_id,
                allocation.status,
            )

    def finish(self, allocation_id: str, event: dict[str, Any], allocation: Allocation | None = None) -> None:
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
        self.metrics.event(str(record.get("status")), parse_aware_datetime(record.get("updatedAt")))

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
        if kind == FEED:
            return FeedStrategy(
                self,
                checker,
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
                    for allocation_id in list(self.waiters):
                        self.finish(allocation_id, error_event(exc, allocation_id))
                    return
            else:
                self.connection.retain()
            settings = self.connection.settings
            log.info(
                "OES poller started for connection %r, enterprise %r: %s, at most %d requests per %g s",
                self.key[0],
                self.enterprise_id,
                f"batches of {self.batch_size} ids per list request"
                if self._kind == "id_batches"
                else STRATEGY_LABELS.get(self._kind, STRATEGY_LABELS[SINGLE]),
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
                    STRATEGY_LABELS[decision.kind],
                )
                self._kind = decision.kind
        except Exception as exc:
            # A bug here must not leave triggers waiting forever: fail them with the reason.
            log.exception("The OES poller for %r stopped unexpectedly", self.key)
            error = OESConnectionError(f"the OES poller for enterprise {self.enterprise_id!r} failed: {exc!r}")
            for allocation_id in list(self.waiters):
                self.finish(allocation_id, error_event(error, allocation_id))
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
