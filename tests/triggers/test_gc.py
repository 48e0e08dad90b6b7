"""The shared pollers' garbage-collector policy: freeze a large fleet, thaw once it turned over, count exactly.

The thresholds are lowered per test (a real fleet needs 10,000 waiting triggers); every test leaves the
collector unfrozen. Whether objects are frozen is shown by what the collector frees, and frozen-object counts
only as "more than before the test": CPython 3.12's collections move immortal objects into the permanent
generation, so ``gc.get_freeze_count()`` reads a few hundred (375 on 3.12.1) with nothing frozen.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes.triggers import _gc
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._shared.waiters import each_waiter
from tests.triggers._support import first_event, make_trigger, wait_for, wait_idle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator


class _Cycle:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Small thresholds; yields the interpreter's frozen-object count before the test."""
    _gc.reset()
    monkeypatch.setattr(_gc, "FREEZE_MIN_WAITING", 100)
    monkeypatch.setattr(_gc, "FREEZE_MIN_NEW", 10)
    yield gc.get_freeze_count()
    _gc.reset()
    gc.unfreeze()


def test_a_small_fleet_is_never_frozen() -> None:
    cycle = _Cycle()
    cycle_ref = weakref.ref(cycle)
    for _ in range(99):
        _gc.added()
    _gc.after_poll()
    assert _gc.freezes == 0
    del cycle
    gc.collect()
    assert cycle_ref() is None  # not frozen: collected as usual


def test_a_large_fleet_is_frozen_and_what_comes_after_is_still_collected(unfrozen: int) -> None:
    frozen = _Cycle()
    frozen_ref = weakref.ref(frozen)
    for _ in range(300):
        _gc.added()
    _gc.after_poll()
    assert _gc.freezes == 1
    assert gc.get_freeze_count() > unfrozen

    # A cycle created after the freeze is collected as usual.
    later = _Cycle()
    later_ref = weakref.ref(later)
    del later
    gc.collect()
    assert later_ref() is None

    # A frozen cycle that became garbage waits for the thaw (the bounded leak the module documents)...
    del frozen
    gc.collect()
    assert frozen_ref() is not None
    # ... which comes once half of the frozen waiters left; the fleet (150 left) is still large: frozen again.
    for _ in range(149):
        _gc.left()
    _gc.after_poll()
    assert _gc.thaws == 0
    _gc.left()
    _gc.after_poll()
    assert frozen_ref() is None
    assert (_gc.thaws, _gc.freezes) == (1, 2)
    assert gc.get_freeze_count() > unfrozen


def test_a_fleet_shrinking_below_the_minimum_is_thawed_and_stays_so() -> None:
    frozen = _Cycle()
    frozen_ref = weakref.ref(frozen)
    for _ in range(150):
        _gc.added()
    _gc.after_poll()
    assert _gc.freezes == 1
    del frozen
    gc.collect()
    assert frozen_ref() is not None  # frozen: a full collection does not see it
    for _ in range(51):
        _gc.left()
    _gc.after_poll()
    assert (_gc.thaws, _gc.freezes) == (1, 1)
    assert frozen_ref() is None  # thawed and collected


def test_no_new_registrations_no_new_freeze() -> None:
    for _ in range(150):
        _gc.added()
    _gc.after_poll()
    for _ in range(9):
        _gc.added()
    _gc.after_poll()
    assert _gc.freezes == 1
    _gc.added()
    _gc.after_poll()
    assert _gc.freezes == 2


@pytest.mark.integration
async def test_the_poller_counts_every_waiter_in_and_out_and_freezes_after_a_poll(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], unfrozen: int
) -> None:
    conn_id = make_connection(batch_size=50)
    ids = [oes_simulator.add_allocation(final_status="reserved") for _ in range(120)]
    finals = ids[:20]
    for allocation_id in finals:
        oes_simulator.set_status(allocation_id, "cleared")
    triggers = [make_trigger(oes_simulator, i, conn_id, poll_interval=0.1) for i in ids]
    tasks = [asyncio.ensure_future(first_event(t)) for t in triggers]
    await wait_for(lambda: all(t.done() for t in tasks[:20]), "the 20 final allocations to fire")
    # Every registration counted in, every event counted out, and a poll after the registrations froze them.
    await wait_for(lambda: _gc.waiting() == 100, "the poller to count 100 waiting")
    await wait_for(lambda: _gc.freezes >= 1, "a freeze after a poll")
    assert gc.get_freeze_count() > unfrozen
    poller = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    assert poller is not None
    assert sum(len(list(each_waiter(w))) for w in poller.waiters.values()) == 100
    for task in tasks[20:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_idle()
    assert _gc.waiting() == 0
