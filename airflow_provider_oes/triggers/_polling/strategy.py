"""What a poll strategy gets and gives: the poller as a :class:`ResultSink`, a :class:`Fallback` decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from airflow_provider_oes.triggers._polling.resource import Resource
    from airflow_provider_oes.triggers._shared.waiters import Waiter

R = TypeVar("R")

FEED = "feed"
ID_BATCHES = "id_batches"
SINGLE = "single"


def strategy_label(kind: str, name: str) -> str:
    """A strategy as logs name it (``name``: the resource's singular noun, as in "one GET per allocation")."""
    if kind == FEED:
        return "the enterprise's change feed"
    return "id batches" if kind == ID_BATCHES else f"one GET per {name}"


@dataclass(frozen=True)
class Fallback:
    """A strategy's decision to hand over to another one.

    :param kind: The strategy to run instead: ``id_batches`` or ``single``.
    :param reason: Why, for the log.
    """

    kind: str
    reason: str


class ResultSink(Protocol[R]):
    """The poller as its strategies see it: what it waits for, who waits, and where results go."""

    key: tuple[str, str]
    enterprise_id: str
    resource: Resource[R]
    waiters: dict[str, Waiter]
    finished: int

    def observe(self, record_id: str, record: R) -> None:
        """A record was read: wake the waiters whose wait it ends."""

    def ends_a_wait(self, record_id: str, record: R) -> bool:
        """Whether the record ends the wait of some trigger waiting for ``record_id``."""

    def finish(self, record_id: str, event: dict[str, Any], record: R | None = None) -> None:
        """Hand ``event`` to every trigger waiting for ``record_id``."""

    def polled(self, sweep_seconds: float | None = None) -> None:
        """A poll (or, with its duration, a sweep over every waiter) is over: metrics and gc housekeeping."""


class PollStrategy(Protocol):
    """Wakes the sink's waiters until none is left (then ``None``) or it hands over (a :class:`Fallback`)."""

    kind: str

    def added(self, record_id: str, last_check: float | None) -> None:
        """A trigger started waiting (called synchronously by the poller)."""

    async def run(self) -> Fallback | None:
        """Poll until nobody waits, or until another strategy must take over."""
