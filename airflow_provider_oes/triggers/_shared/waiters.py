"""Waiting triggers: one :class:`Waiter` per trigger, chained per allocation, and bounded concurrent runs.

A big triggerer holds 100,000 waiters: each is one slotted object (no handle, no list per allocation); the
rare other triggers waiting for the same allocation hang off the first through :attr:`Waiter.next_waiter`.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator


class WaiterOwner(Protocol):
    """Who keeps a waiter (the shared poller): :meth:`Waiter.cancel` leaves it."""

    def remove(self, waiter: Waiter) -> None: ...


class Waiter:
    """One trigger waiting for one allocation, and its handle on the shared poller.

    Await :meth:`wait`, and always :meth:`cancel` afterwards.
    """

    __slots__ = ("allocation_id", "future", "last_check", "next_waiter", "owner", "poll_interval")

    def __init__(
        self,
        allocation_id: str,
        poll_interval: float,
        future: asyncio.Future[dict[str, Any]],
        last_check: float | None = None,
        owner: WaiterOwner | None = None,
    ) -> None:
        self.allocation_id = allocation_id
        self.poll_interval = poll_interval
        self.future = future
        self.last_check = last_check
        """Server time (epoch s) at which the allocation was last seen not final; ``None``: unknown."""
        self.owner = owner
        self.next_waiter: Waiter | None = None
        """Another trigger waiting for the same allocation (``None`` for almost all)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(allocation_id={self.allocation_id!r}, last_check={self.last_check!r})"

    def wait(self) -> asyncio.Future[dict[str, Any]]:
        """Await it: the event payload, once the allocation is final or a permanent error was seen."""
        return self.future

    def cancel(self) -> None:
        """Leave the poller (idempotent). Synchronous, so it also works in a cancelled coroutine's ``finally``."""
        if self.owner is not None:
            self.owner.remove(self)


def each_waiter(first: Waiter | None) -> Iterator[Waiter]:
    """Every trigger waiting for one allocation: ``first`` (its entry in a waiter table) and the chain behind it."""
    waiter = first
    while waiter is not None:
        # Read the link before handing the waiter out: a consumer may remove it from the chain meanwhile.
        following = waiter.next_waiter
        yield waiter
        waiter = following


def link(waiters: dict[str, Waiter], waiter: Waiter) -> None:
    """Put ``waiter`` first for its allocation in ``waiters`` (the newest first)."""
    first = waiters.get(waiter.allocation_id)
    if first is not None:  # rare: another trigger waits for this allocation already
        waiter.next_waiter = first
    waiters[waiter.allocation_id] = waiter


def unlink(waiters: dict[str, Waiter], waiter: Waiter) -> bool:
    """Take ``waiter`` out of ``waiters``; False when it is not there (its allocation was finished)."""
    first = waiters.get(waiter.allocation_id)
    if first is waiter:
        if waiter.next_waiter is None:
            del waiters[waiter.allocation_id]
        else:
            waiters[waiter.allocation_id] = waiter.next_waiter
        return True
    # Its own link stays as it is: whoever is walking the chain right now must still reach the rest.
    before = first
    while before is not None:
        if before.next_waiter is waiter:
            before.next_waiter = waiter.next_waiter
            return True
        before = before.next_waiter
    return False


def smallest_interval(waiters: dict[str, Waiter]) -> float:
    """The smallest poll interval any waiting trigger asked for (the pace of the poller; ``inf`` when none)."""
    smallest = math.inf
    for first in waiters.values():
        waiter: Waiter | None = first
        while waiter is not None:  # a loop, not each_waiter(): it runs over 100,000 waiters each interval
            if waiter.poll_interval < smallest:
                smallest = waiter.poll_interval
            waiter = waiter.next_waiter
    return smallest


def latest_check(first: Waiter) -> float | None:
    """The latest ``last_check`` among the waiters of one allocation (any of them proves 'not final then')."""
    checks = [w.last_check for w in each_waiter(first) if w.last_check is not None]
    return max(checks) if checks else None


async def bounded(items: Iterable[Any], fn: Callable[[Any], Awaitable[object]], concurrency: int) -> None:
    """Run ``fn`` over ``items`` with at most ``concurrency`` calls in flight (workers, not one task per item)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:  # a shared iterator: each item goes to exactly one worker
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
