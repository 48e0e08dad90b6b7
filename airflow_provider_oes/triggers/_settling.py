"""The shared settlement poller: one per ``(connection, enterprise)`` and event loop, for every waiting settlement.

It asks the settlements list about the waiting settlements in id batches (``settlementIds``), through the
same shared connection (HTTP client, rate limiter) as the allocation pollers of that connection, and reads a
settlement with its transfers (the GET by id) only once it is in a status a trigger acts on. Design notes:
``docs/internals/settlement-poller.rst``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._metrics import FLUSH_PERIOD
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESConnectionError, OESError
from airflow_provider_oes.triggers._events import error_event
from airflow_provider_oes.triggers._settlement_events import settled_event
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers._shared.loop_local import LoopLocal
from airflow_provider_oes.triggers._shared.waiters import Waiter, each_waiter, link, smallest_interval, unlink

if TYPE_CHECKING:
    from airflow_provider_oes.settlement_models import Settlement, SettlementDetails
    from airflow_provider_oes.triggers._shared.connections import SharedConnection

log = logging.getLogger("airflow_provider_oes.triggers._settling")

__all__ = ["SettlementPoller", "SettlementWaiter", "register_settlement", "running_settlement_pollers"]


class SettlementWaiter(Waiter):
    """One trigger waiting for one settlement (its id in ``allocation_id``, the shared waiter's key)."""

    __slots__ = ("fail_on_failed",)

    def __init__(self, *args: Any, fail_on_failed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_on_failed = fail_on_failed
        """Whether a ``failed`` settlement is this trigger's outcome (else it waits on: BitGo retries it)."""


@dataclass
class SettlementPollers:
    """The settlement pollers of one event loop, by ``(conn_id, enterprise_id)``."""

    pollers: dict[tuple[str, str], SettlementPoller] = field(default_factory=dict)


_registry: LoopLocal[SettlementPollers] = LoopLocal(SettlementPollers)


def running_settlement_pollers() -> dict[tuple[str, str], SettlementPoller]:
    """The settlement pollers of this event loop by ``(conn_id, enterprise_id)`` (for tests and logs)."""
    return _registry.get().pollers


def register_settlement(
    conn_id: str, enterprise_id: str, settlement_id: str, poll_interval: float, *, fail_on_failed: bool
) -> SettlementWaiter:
    """Add one waiting settlement to the shared settlement poller of its connection and enterprise.

    :param conn_id: Airflow connection id of type ``oes``.
    :param enterprise_id: Validated enterprise id.
    :param settlement_id: Validated settlement id.
    :param poll_interval: Seconds between checks wanted by this trigger (the poller uses the smallest).
    :param fail_on_failed: Whether ``failed`` ends this trigger's wait.
    """
    registry = _registry.get()
    key = (conn_id, enterprise_id)
    poller = registry.pollers.get(key)
    if poller is None:
        poller = registry.pollers[key] = SettlementPoller(registry, key)
    return poller.add(settlement_id, poll_interval, fail_on_failed)


class SettlementPoller:
    """Polls every settlement waited for under one connection and enterprise.

    :param registry: The event loop's registry the poller removes itself from when idle.
    :param key: ``(conn_id, enterprise_id)``.
    """

    def __init__(self, registry: SettlementPollers, key: tuple[str, str]) -> None:
        self._registry = registry
        self.key = key
        self.enterprise_id = key[1]
        self.waiters: dict[str, Waiter] = {}
        """Settlement id -> the first trigger waiting for it (the others: :func:`each_waiter`)."""
        self.sweeps = 0
        self.finished = 0
        self._conn: SharedConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._warned: dict[str, str] = {}
        """Settlement id -> the status last warned about (a warning per change, not per sweep)."""
        self._flushed: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.key[0]!r}, enterprise_id={self.key[1]!r}, waiting={len(self.waiters)})"

    @property
    def connection(self) -> SharedConnection:
        """The connection's shared HTTP client and rate limiter (once the polling task has read it)."""
        if self._conn is None:
            raise RuntimeError(f"{self!r} has not read its connection yet")
        return self._conn

    def add(self, settlement_id: str, poll_interval: float, fail_on_failed: bool) -> SettlementWaiter:
        """Wait for one settlement; start the polling task if it is not running."""
        if self._stopped:  # pragma: no cover - register_settlement() never hands out a stopped poller
            raise RuntimeError("this poller has stopped")
        future = asyncio.get_running_loop().create_future()
        waiter = SettlementWaiter(settlement_id, poll_interval, future, None, self, fail_on_failed=fail_on_failed)
        link(self.waiters, waiter)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"oes-settlement-poller-{self.key[0]}-{self.enterprise_id}"
            )
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Stop waiting (the trigger got its event or was cancelled); stop the poller if nobody is left."""
        unlink(self.waiters, waiter)
        if not waiter.future.done():
            waiter.future.cancel()
        if not self.waiters and self._task is not None and not self._stopped:
            self._detach()
            self._task.cancel()

    def finish(self, settlement_id: str, event: dict[str, Any], *, fail_fast_only: bool = False) -> None:
        """Hand ``event`` to the triggers waiting for ``settlement_id`` (``fail_fast_only``: those with
        ``fail_on_failed`` only; the others keep waiting)."""
        handed = 0
        for waiter in each_waiter(self.waiters.get(settlement_id)):
            if fail_fast_only and not getattr(waiter, "fail_on_failed", False):
                continue
            unlink(self.waiters, waiter)
            handed += 1
            if not waiter.future.done():
                waiter.future.set_result(event)
        if handed:
            self.finished += 1
        if settlement_id not in self.waiters:
            self._warned.pop(settlement_id, None)

    # ------------------------------------------------------------------ polling

    async def sweep(self) -> None:
        """Ask once about every waiting settlement: one list request per batch of ids, a GET for each one to act on."""
        ids = list(self.waiters)
        size = self.connection.batch_size
        for start in range(0, len(ids), size):
            await self._check_batch(ids[start : start + size])
        self.sweeps += 1
        self.flush_metrics()

    def flush_metrics(self, final: bool = False) -> None:
        """Send the connection's request metrics every ``FLUSH_PERIOD`` seconds (an allocation poller of the
        same connection may send them too: whoever flushes sends them once)."""
        batch = self.connection.client.metrics
        now = asyncio.get_running_loop().time()
        if batch.on and (final or self._flushed is None or now - self._flushed >= FLUSH_PERIOD):
            self._flushed = now
            batch.flush()

    async def _check_batch(self, ids: list[str]) -> None:
        from airflow_provider_oes._settlement_api import SETTLEMENTS, parse_record
        from airflow_provider_oes.settlement_models import ListedSettlement

        client = self.connection.client
        try:
            # Page size = batch size: one page holds them all. A server that pages shorter only costs GETs: an
            # id missing from the answer is read by id below, never taken as settled.
            records = await client.list_settlements_page(self.enterprise_id, settlement_ids=ids, page_size=len(ids))
        except OESError as exc:
            self._failed_request(exc, ids, "the settlements list")
            return
        wanted = {i.lower(): i for i in ids}
        listed: dict[str, Settlement] = {}
        what = f"{SETTLEMENTS.subject} of enterprise {self.enterprise_id!r}"
        for position, record in enumerate(records):
            record_id = str(record.get("id", "")).lower() if isinstance(record, dict) else ""
            try:
                settlement = parse_record(
                    ListedSettlement, record, what=what, enterprise_id=self.enterprise_id, position=position
                )
            except OESError as exc:
                if record_id in wanted:  # its waiters learn why; the batch's other settlements go on
                    self.finish(wanted[record_id], error_event(exc))
                continue
            if record_id in wanted:
                listed[wanted[record_id]] = settlement
        for settlement_id in ids:
            found = listed.get(settlement_id)
            # Not listed: unknown, or not ours; the GET by id says which (a 404 is a permanent error).
            if found is None or self._acts_on(settlement_id, found):
                await self._read(settlement_id)
            elif settlement_id in self.waiters:
                self._note(settlement_id, found)

    def _acts_on(self, settlement_id: str, settlement: Settlement) -> bool:
        """Whether some trigger ends its wait on this status (then the full settlement is read)."""
        if settlement.is_final:
            return True
        return settlement.is_failed and any(
            getattr(w, "fail_on_failed", False) for w in each_waiter(self.waiters.get(settlement_id))
        )

    async def _read(self, settlement_id: str) -> None:
        if settlement_id not in self.waiters:
            return
        try:
            details = await self.connection.client.get_settlement(settlement_id, self.enterprise_id)
        except OESError as exc:
            self._failed_request(exc, [settlement_id], f"settlement {settlement_id!r}")
            return
        self.observe(settlement_id, details)

    def observe(self, settlement_id: str, details: SettlementDetails) -> None:
        """A settlement was read with its transfers: wake the triggers it ends, warn about what it does not."""
        settlement = details.settlement
        if settlement.is_final:
            self.finish(settlement_id, settled_event(details, self.enterprise_id))
            return
        if settlement.is_failed:
            self.finish(settlement_id, settled_event(details, self.enterprise_id), fail_fast_only=True)
        if settlement_id in self.waiters:
            self._note(settlement_id, settlement)

    def _note(self, settlement_id: str, settlement: Settlement) -> None:
        """Warn, once per status change, about a ``failed`` or unknown status that keeps its triggers waiting."""
        if settlement.has_known_status and not settlement.is_failed:
            return
        status = str(settlement.status)
        if self._warned.get(settlement_id) == status:
            return
        self._warned[settlement_id] = status
        if settlement.is_failed:
            log.warning(
                "Settlement %s failed (reason given by BitGo: %s). BitGo retries failed settlements, so it is not "
                "final: still waiting until it is completed or rejected.",
                settlement.id,
                settlement.reason or "none given",
            )
        else:
            log.warning(
                "Settlement %s has status %r, which this provider does not know; it is not treated as final. "
                "Still waiting.",
                settlement.id,
                status,
            )

    def _failed_request(self, exc: OESError, ids: list[str], what: str) -> None:
        if is_transient(exc):
            # The connection's retries are spent; the next sweep asks again (the sensor's timeout bounds the wait).
            log.warning(
                "Could not read %s of enterprise %r this time, will try again: %s", what, self.enterprise_id, exc
            )
            return
        for settlement_id in ids:
            self.finish(settlement_id, error_event(exc))

    # ------------------------------------------------------------------ lifecycle

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                self._conn = await connections.acquire(self.key[0])
            except OESError as exc:
                self._detach()
                for settlement_id in list(self.waiters):
                    self.finish(settlement_id, error_event(exc))
                return
            while self.waiters:
                started = loop.time()
                await self.sweep()
                if not self.waiters:
                    break
                await asyncio.sleep(max(0.0, smallest_interval(self.waiters) - (loop.time() - started)))
        except Exception as exc:
            # A bug here must not leave triggers waiting forever: fail them with the reason.
            log.exception("The OES settlement poller for %r stopped unexpectedly", self.key)
            error = OESConnectionError(
                f"the OES settlement poller for enterprise {self.enterprise_id!r} failed: {exc!r}"
            )
            for settlement_id in list(self.waiters):
                self.finish(settlement_id, error_event(error))
        finally:
            await self._stop()

    def _detach(self) -> None:
        self._stopped = True
        if self._registry.pollers.get(self.key) is self:
            del self._registry.pollers[self.key]

    async def _stop(self) -> None:
        self._detach()
        for first in list(self.waiters.values()):
            for waiter in each_waiter(first):
                waiter.future.cancel()
        self.waiters.clear()
        if self._conn is not None:
            self.flush_metrics(final=True)
            await connections.release(self.key[0], self._conn)
