"""Keep CPython's full garbage collections short while a triggerer holds a large fleet of waiting triggers.

After a poll, once :data:`FREEZE_MIN_WAITING` triggers wait, the young generations are collected and
:func:`gc.freeze` moves the long-lived waiters out of the full collections' way; once :data:`THAW_SHARE` of
them left, one :func:`gc.unfreeze` and full collection reclaims what they left. Below the threshold nothing is
touched. Why this is safe beside other providers' triggers: ``docs/internals/gc.rst``.
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


def waiting() -> int:
    """Triggers waiting in the shared pollers of this process now."""
    return _waiting


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
