"""Keep CPython's full garbage collections short while a triggerer holds a large fleet of waiting triggers.

A waiting trigger is a dozen container objects (the triggerer's task, its coroutine and async generator,
the trigger, our registration and its future). A full collection walks every one of them: at 100,000
waiting triggers that is about 1.3 million objects and 0.5-1 s during which the event loop, and with it
every other trigger of the triggerer, stands still. Those objects live until their allocation turns final,
so walking them again and again finds nothing.

What this module does, from the shared pollers, after a poll (never in the middle of one):

* **Freeze.** Once at least :data:`FREEZE_MIN_WAITING` triggers wait in this process and at least
  :data:`FREEZE_MIN_NEW` registered since the last freeze, collect the young generations (cheap: only
  recent objects) and call :func:`gc.freeze`: every object alive now moves to the permanent generation,
  which collections skip. Full collections then only walk what was created since: milliseconds.
* **Bounded leak, then thaw.** A frozen object is still freed by reference counting, the way nearly every
  object dies; only a reference *cycle* among frozen objects that became garbage stays until it is thawed.
  Its memory is at most what was in use at the freeze, i.e. never more than the peak the process already
  had. Once as many waiting triggers left as :data:`THAW_SHARE` of those frozen (the frozen set may then be
  half garbage), or fewer than :data:`FREEZE_MIN_WAITING` are left, the module calls :func:`gc.unfreeze`
  and one full :func:`gc.collect` at once (one pause, as long as the full collections Airflow's process
  would otherwise have run on its own schedule every time its long-lived objects grew by a quarter), and
  freezes again if the fleet is still large.

Why this is safe inside a real triggerer, which runs other providers' triggers in the same process and loop:
freezing changes *when* cyclic garbage is reclaimed, never *whether* a live object stays alive or a dead one
with no cycle is freed; finalizers and weak references behave as before, only later for frozen cycles.
Airflow's triggerer itself never calls :func:`gc.freeze` (its LocalExecutor does, in the scheduler, around
a fork, and unfreezes right after); a thaw by someone else only means the next full collection is long
again. Below :data:`FREEZE_MIN_WAITING` nothing is touched: small deployments and tests keep Python's
default behaviour. State is per process, because the collector is.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_MIN_WAITING = 10_000
"""Waiting triggers in this process from which freezing pays: below it a full collection takes < ~50 ms."""
FREEZE_MIN_NEW = 1_000
"""Registrations since the last freeze that justify another (a triggerer loads its triggers in chunks)."""
THAW_SHARE = 0.5
"""Thaw (and collect once) when the waiters that left since the first freeze reach this share of the frozen."""

_waiting = 0
"""Triggers waiting in the shared pollers of this process."""
_new_since_freeze = 0
_frozen = 0
"""Waiting triggers frozen since the last thaw (an upper bound of the frozen fleet)."""
_left_since_thaw = 0
"""Waiters that left since the last thaw: each may have left a frozen cycle behind."""
freezes = 0
"""Freezes done in this process (for tests and benchmarks)."""
thaws = 0
"""Thaws done in this process (for tests and benchmarks)."""


def added() -> None:
    """A trigger started waiting in a shared poller."""
    global _waiting, _new_since_freeze
    _waiting += 1
    _new_since_freeze += 1


def left() -> None:
    """A trigger stopped waiting (event handed over, or cancelled)."""
    global _waiting, _left_since_thaw
    _waiting -= 1
    if _frozen:
        _left_since_thaw += 1


def after_poll() -> None:
    """Called by a shared poller between polls: freeze a grown fleet, thaw a frozen set that turned over."""
    global _new_since_freeze, _frozen, _left_since_thaw, freezes, thaws
    if _frozen and (_waiting < FREEZE_MIN_WAITING or _left_since_thaw >= THAW_SHARE * _frozen):
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        thaws += 1
        log.info(
            "Thawed the objects frozen for %d waiting triggers (%d left since) and collected them in %.0f ms",
            _frozen,
            _left_since_thaw,
            1000 * (time.perf_counter() - started),
        )
        _frozen = _left_since_thaw = 0
        _new_since_freeze = _waiting  # all unfrozen again: the next check freezes them if still many
    if _waiting >= FREEZE_MIN_WAITING and _new_since_freeze >= FREEZE_MIN_NEW:
        # The young generations first: what died recently is freed now instead of being frozen.
        gc.collect(1)
        gc.freeze()
        freezes += 1
        _frozen += min(_new_since_freeze, _waiting)
        _new_since_freeze = 0


def reset() -> None:
    """Forget the counts and thaw (tests)."""
    global _waiting, _new_since_freeze, _frozen, _left_since_thaw, freezes, thaws
    if _frozen:
        gc.unfreeze()
    _waiting = _new_since_freeze = _frozen = _left_since_thaw = freezes = thaws = 0
