"""``wait_at_most``: a timed wait that never swallows the caller's cancellation (``asyncio.wait_for`` does on
Python 3.10/3.11 when the inner work completes in the same loop iteration, CPython gh-86296)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from airflow_provider_oes._aio import wait_at_most


async def _consumer(queue: asyncio.Queue[int], wait: object) -> None:
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await wait(queue.get(), 5)  # type: ignore[operator]


async def _swallowed(wait: object, rounds: int = 20) -> int:
    """How many of ``rounds`` cancellations, sent as the inner ``get`` completes, the consumer survived."""
    swallowed = 0
    for _ in range(rounds):
        queue: asyncio.Queue[int] = asyncio.Queue()
        task = asyncio.ensure_future(_consumer(queue, wait))
        await asyncio.sleep(0)
        queue.put_nowait(1)  # the inner get completes...
        await asyncio.sleep(0)
        task.cancel()  # ...and the caller is cancelled in the same loop iteration
        done, _ = await asyncio.wait({task}, timeout=0.05)
        if not done:
            swallowed += 1
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return swallowed


async def test_a_cancellation_racing_the_inner_result_is_never_swallowed() -> None:
    assert await _swallowed(wait_at_most) == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for is fixed on Python 3.12+")
async def test_the_race_is_real_with_asyncio_wait_for_on_this_python() -> None:
    # The scenario above does reproduce the bug with the standard library on 3.10/3.11: the test is not vacuous.
    assert await _swallowed(asyncio.wait_for) > 0


async def test_returns_the_result_or_raises_its_exception() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def boom() -> None:
        raise ValueError("bad")

    assert await wait_at_most(value(), 1) == 7
    with pytest.raises(ValueError, match="bad"):
        await wait_at_most(boom(), 1)


async def test_time_up_cancels_the_inner_work_and_raises_timeout() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(asyncio.TimeoutError):
        await wait_at_most(slow(), 0.05)
    assert started.is_set()
    assert cancelled.is_set()


async def test_cancelling_the_caller_cancels_the_inner_work() -> None:
    inner_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    caller = asyncio.ensure_future(wait_at_most(slow(), 30))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert inner_cancelled.is_set()
