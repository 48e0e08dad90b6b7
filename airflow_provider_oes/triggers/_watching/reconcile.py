"""A watcher's reconciliation: now and then, read back below its floor for rows committed too late for the feed."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.triggers._watching.window import EventWindow

log = logging.getLogger("airflow_provider_oes.triggers.event")

RECONCILE_SECONDS = 300.0
"""How often a watcher reads back below its floor (one page per ``feed_page_size`` rows changed meanwhile)."""
RECONCILE_MEMORY = timedelta(seconds=600)
"""How far below its floor it reads back, and remembers what it emitted: the most commit lag plus clock skew
beyond the feed's overlap that it catches."""


class Reconciler:
    """Asks the feed, every :data:`RECONCILE_SECONDS`, to page back over ``[floor - memory, floor + overlap)``
    for this subscription alone; the window emits what it finds there that it did not emit (logged loudly).

    :param clock: Monotonic clock.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self.runs = 0

    def tick(self, subscription: Any, window: EventWindow | None) -> None:
        """Start a read-back if one is due (and the feed can: in-memory test feeds cannot)."""
        look_back = getattr(subscription.feed, "look_back", None)
        if window is None or look_back is None or self._clock() - self._last < RECONCILE_SECONDS:
            return
        self._last = self._clock()
        window.memory = RECONCILE_MEMORY
        floor = window.floor.timestamp()
        self.runs += 1
        look_back(subscription, floor - RECONCILE_MEMORY.total_seconds(), floor + window.overlap.total_seconds())
