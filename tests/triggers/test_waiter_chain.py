"""The poller's table of waiting triggers: one entry per allocation, the rare extra triggers chained behind it.

No network: a poller whose polling task is a placeholder, driven by random sequences of registrations,
cancellations and final statuses, checked after every step against a plain model (allocation -> live
waiters). A waiter lost from the chain would be a trigger that never gets its event.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._polling.allocations import ALLOCATIONS
from airflow_provider_oes.triggers._shared.waiters import Waiter, each_waiter, smallest_interval

_IDS = ["a", "b", "c"]
_KEEPER = "keeper"  # never finished nor cancelled: keeps the poller from stopping when the others are empty


def _poller_without_polling() -> polling.Poller[Any]:
    connection: Any = SimpleNamespace(settings=SimpleNamespace(strategy="id_batches", batch_size=100), pollers=0)
    registry = polling.PollerRegistry()
    poller = polling.Poller(registry, ("oes_chain", "ent-chain"), ALLOCATIONS, connection)
    poller._task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]  # add() starts nothing
    return poller


def _check(poller: polling.Poller[Any], model: dict[str, list[Waiter]]) -> None:
    table = {i: list(each_waiter(first)) for i, first in poller.waiters.items()}
    assert {i: set(map(id, ws)) for i, ws in table.items()} == {i: set(map(id, ws)) for i, ws in model.items() if ws}
    assert all(len(ws) == len(set(map(id, ws))) for ws in table.values())  # no waiter twice in a chain
    assert all(w.allocation_id == i for i, ws in table.items() for w in ws)
    assert smallest_interval(poller.waiters) == min(w.poll_interval for ws in model.values() for w in ws)


_step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(_IDS), st.sampled_from([0.5, 1.0, 2.0, 5.0])),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0.0)),
    st.tuples(st.just("finish"), st.sampled_from(_IDS), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_step, max_size=40))
def test_every_waiter_is_woken_once_or_cancelled_whatever_the_order(steps: list[tuple[str, Any, float]]) -> None:
    async def scenario() -> None:
        poller = _poller_without_polling()
        keeper = poller.add(_KEEPER, 10.0)
        model: dict[str, list[Waiter]] = {_KEEPER: [keeper]}
        made: list[Waiter] = []
        woken: dict[int, str] = {}  # waiter -> the allocation whose event it got
        for op, arg, interval in steps:
            if op == "add":
                waiter = poller.add(arg, interval)
                made.append(waiter)
                model.setdefault(arg, []).append(waiter)
            elif op == "cancel" and made:
                waiter = made[arg % len(made)]
                waiter.cancel()  # idempotent: a second cancel, or one after the event, changes nothing
                if any(w is waiter for w in model.get(waiter.allocation_id, [])):
                    model[waiter.allocation_id] = [w for w in model[waiter.allocation_id] if w is not waiter]
                    assert waiter.future.cancelled()
            elif op == "finish":
                poller.finish(arg, {"status": "terminal", "allocation": {"id": arg}})
                for waiter in model.pop(arg, []):
                    assert waiter.future.done()
                    assert not waiter.future.cancelled()
                    assert id(waiter) not in woken
                    woken[id(waiter)] = waiter.future.result()["allocation"]["id"]
            _check(poller, model)
        # Every waiter ended exactly one way: its own allocation's event, cancelled, or still waiting.
        for waiter in made:
            still = any(w is waiter for w in model.get(waiter.allocation_id, []))
            if id(waiter) in woken:
                assert woken[id(waiter)] == waiter.allocation_id
                assert not still
            else:
                assert waiter.future.cancelled() or (still and not waiter.future.done())
        for first in list(poller.waiters.values()):
            for waiter in each_waiter(first):
                waiter.cancel()
        assert poller.waiters == {}

    asyncio.run(scenario())


async def test_a_walk_reaches_every_waiter_while_the_walked_ones_leave() -> None:
    poller = _poller_without_polling()
    waiters = [poller.add("a", 1.0 + k) for k in range(4)]
    seen = []
    for waiter in each_waiter(poller.waiters["a"]):
        seen.append(waiter)
        waiter.cancel()  # as a trigger cancelled mid-walk would: the walk must still reach the rest
    assert sorted(map(id, seen)) == sorted(map(id, waiters))
    assert "a" not in poller.waiters
    assert smallest_interval(poller.waiters) == math.inf
