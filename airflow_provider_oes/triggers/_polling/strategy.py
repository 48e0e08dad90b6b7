"""What a poll strategy gets and gives: the poller as a :class:`ResultSink`, a :class:`Fallback` decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.triggers._shared.waiters import Waiter

FEED = "feed"
ID_BATCHES = "id_batches"
SINGLE = "single"
STRATEGY_LABELS = {FEED: "the enterprise's change feed", ID_BATCHES: "id batches", SINGLE: "one GET per allocation"}
"""Each strategy as logs name it."""


@dataclass(frozen=True)
class Fallback:
    """A strategy's decision to hand over to another one.

    :param kind: The strategy to run instead: ``id_batches`` or ``single``.
    :param reason: Why, for the log.
    """

    kind: str
    reason: str


class ResultSink(Protocol):
    """The poller as its strategies see it: who waits, and where results go."""

    key: tuple[str, str]
    enterprise_id: str
    waiters: dict[str, Waiter]
    finished: int

    def observe(self, allocation_id: str, allocation: Allocation) -> None:
        """An allocation was read: wake its waiters if it is final."""

    def finish(self, allocation_id: str, event: dict[str, Any], allocation: Allocation | None = None) -> None:
        """Hand ``event`` to every trigger waiting for ``allocation_id``."""

    def polled(self, sweep_seconds: float | None = None) -> None:
        """A poll (or, with its duration, a sweep over every waiter) is over: metrics and gc housekeeping."""


class PollStrategy(Protocol):
    """Wakes the sink's waiters until none is left (then ``None``) or it hands over (a :class:`Fallback`)."""

    kind: str

    def added(self, allocation_id: str, last_check: float | None) -> None:
        """A trigger started waiting (called synchronously by the poller)."""

    async def run(self) -> Fallback | None:
        """Poll until nobody waits, or until another strategy must take over."""
