"""Waiting with a time limit without ever swallowing the caller's cancellation.

``asyncio.wait_for`` on Python 3.10 and 3.11 returns the inner result instead of raising ``CancelledError`` when
the awaited thing completes in the same loop iteration as the caller is cancelled (CPython gh-86296, fixed in
3.12): a trigger the triggerer cancelled would then keep running. Every timed wait of the package goes here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["wait_at_most"]

T = TypeVar("T")


async def wait_at_most(awaitable: Awaitable[T], timeout: float) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds, like :func:`asyncio.wait_for`.

    Raises :class:`asyncio.TimeoutError` (the inner work cancelled) when the time is up; a cancellation of the
    caller always propagates, the inner work cancelled too, even if it completed in that same iteration.

    :param awaitable: What to wait for (a coroutine, task or future).
    :param timeout: The most seconds to wait.
    """
    inner = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout)
    except BaseException:
        inner.cancel()
        raise
    if not done:
        inner.cancel()
        # Let the inner work finish its cancellation first, as wait_for does; a cancellation of the caller
        # meanwhile propagates from here.
        await asyncio.wait({inner})
        if inner.cancelled():
            raise asyncio.TimeoutError
        return inner.result()  # it ended on its own while being cancelled: its result or its exception
    return inner.result()
