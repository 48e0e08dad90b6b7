"""In-memory stand-ins for the event trigger's surroundings: an OES server's final rows, the change feed, and
Airflow's asset state store. They follow the real contracts (duck-typed): the feed hands rows with
``updatedAt >= since - overlap`` on a restart and re-hands rows of the overlap window on every poll (the real
feed hands each row once; handing them again makes the trigger's own dedup carry the whole load).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from tests._factories import allocation_record

requires_airflow_33 = pytest.mark.skipif(
    not hasattr(BaseEventTrigger, "create_shared_stream_producer"),
    reason="AllocationEventTrigger needs Airflow 3.3 (asset state store, shared-stream acknowledgements); "
    "on 3.2 it refuses to be built (tested in test_event_trigger.py)",
)

OVERLAP = 30.0
ENTERPRISE = "ent1"


async def until(predicate: Any, what: str, timeout: float = 5.0) -> Any:
    """Let the event loop run until ``predicate()`` is truthy and return that value; fail naming ``what`` after
    ``timeout`` seconds (a deadline, not a count of loop turns: how many turns a step takes varies)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Row:
    id: str
    updated_at: float
    record: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Batch:
    rows: tuple[Row, ...] = ()
    final: bool = False
    resume_from: float | None = None
    polled_at: float | None = None
    error: Exception | None = None


class Server:
    """Allocations and a server clock (epoch seconds) that the test moves on."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.records: dict[str, dict[str, Any]] = {}
        self._ids = (str(uuid.UUID(int=i + 1)) for i in itertools.count())

    def add(self, **overrides: Any) -> str:
        allocation_id = next(self._ids)
        self.records[allocation_id] = allocation_record(id=allocation_id, updatedAt=iso(self.now), **overrides)
        return allocation_id

    def flip(self, allocation_id: str, status: str, at: float | None = None) -> None:
        record = self.records[allocation_id]
        record["status"] = status
        record["updatedAt"] = iso(self.now if at is None else at)
        record["reason"] = None if status == "cleared" else "partner rejected"

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def finals_since(self, since: float | None) -> tuple[Row, ...]:
        rows = []
        for allocation_id, record in self.records.items():
            updated = datetime.fromisoformat(record["updatedAt"].replace("Z", "+00:00")).timestamp()
            if record["status"] in ("cleared", "released") and (since is None or updated >= since):
                rows.append(Row(allocation_id, updated, copy.deepcopy(record)))
        return tuple(sorted(rows, key=lambda r: -r.updated_at))


class Feed:
    """One change feed (per connection, enterprise and query)."""

    def __init__(self, server: Server, overlap: float = OVERLAP) -> None:
        self.server = server
        self.overlap = overlap
        self.enterprise_id = ENTERPRISE
        self.closed = False
        """Set by a test to play a feed that stopped."""
        self.subscriptions: list[Subscription] = []

    def subscribe(self, *, interval: float, since: float | None) -> Subscription:
        sub = Subscription(self, interval, None if since is None else since - self.overlap)
        self.subscriptions.append(sub)
        return sub


class Subscription:
    """The test decides when a poll happens (:meth:`poll`) or fails (:meth:`fail`)."""

    def __init__(self, feed: Feed, interval: float, floor: float | None) -> None:
        self.feed = feed
        self.interval = interval
        self.floor = floor
        self.floor_pending = floor is None
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self.closed = False

    def poll(self, pages: int = 1) -> None:
        """A complete poll at the server's now: rows from the floor (first poll) or the overlap window."""
        server = self.feed.server
        now = server.now
        if self.floor_pending:
            self.floor, self.floor_pending = now - self.feed.overlap, False
        rows = server.finals_since(self.floor)
        chunks = [rows[i::pages] for i in range(pages)] if pages > 1 else [rows]
        for chunk in chunks[:-1]:
            self.queue.put_nowait(Batch(tuple(chunk), polled_at=now))
        self.queue.put_nowait(Batch(tuple(chunks[-1]), final=True, resume_from=now, polled_at=now))
        self.floor = now - self.feed.overlap

    def fail(self, error: Exception) -> None:
        self.queue.put_nowait(Batch(error=error, final=True))

    async def __anext__(self) -> Batch:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True


class Accessor:
    """One asset's state store (``aget``/``aset`` like Airflow's accessor), values copied like a DB would."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.history: list[Any] = []
        self.fail_next_reads = 0
        self.fail_next_writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        await asyncio.sleep(0)
        if self.fail_next_reads:
            self.fail_next_reads -= 1
            raise ConnectionError("state store unreachable")
        return copy.deepcopy(self.values.get(key, default))

    async def aset(self, key: str, value: Any) -> None:
        await asyncio.sleep(0)
        if self.fail_next_writes:
            self.fail_next_writes -= 1
            raise ConnectionError("state store unreachable")
        self.values[key] = copy.deepcopy(value)
        self.history.append(copy.deepcopy(value))

    async def adelete(self, key: str) -> None:
        await asyncio.sleep(0)
        self.values.pop(key, None)


def opener(feed: Feed) -> Any:
    """An ``open_subscription`` for ``Watcher`` that subscribes to ``feed`` like the real one does."""

    async def open_subscription(watcher: Any) -> Subscription:
        return feed.subscribe(interval=watcher.trigger.poll_interval, since=watcher.since(feed.overlap))

    return open_subscription
