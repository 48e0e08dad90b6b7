"""Airflow 3.3's shared stream for the watchers (ack mode): the producer, and the state store's handoff.

Airflow builds the producer from kwargs only; the trigger instance that has the asset state store hands it
over through :func:`hand_over_store` / :func:`take_store`, keyed by the watcher's identity.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.triggers._shared.loop_local import LoopLocal
from airflow_provider_oes.triggers._watching.watcher import Commit, Watcher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from airflow_provider_oes.triggers._watching.watcher import WatchedTrigger
    from airflow_provider_oes.triggers._watching.window import StateStore

log = logging.getLogger("airflow_provider_oes.triggers.event")

_handoffs: LoopLocal[dict[str, asyncio.Future[StateStore | None]]] = LoopLocal(dict)


def hand_over_store(key: str, store: StateStore | None) -> None:
    """The subscriber (the trigger instance Airflow gave the state store to) hands it to the producer."""
    handoffs = _handoffs.get()
    future = handoffs.get(key)
    if future is None or future.done():
        future = handoffs[key] = asyncio.get_running_loop().create_future()
    future.set_result(store)


async def take_store(key: str) -> StateStore | None:
    """The producer waits for its subscriber's state store."""
    handoffs = _handoffs.get()
    future = handoffs.setdefault(key, asyncio.get_running_loop().create_future())
    try:
        return await future
    finally:
        if handoffs.get(key) is future:
            del handoffs[key]


def _shared_stream_base() -> type:
    try:
        from airflow.triggers.shared_stream import SharedStreamProducer
    except ImportError:  # Airflow 3.2: the trigger refuses to be built there anyway
        return object
    return SharedStreamProducer


class EventStreamProducer(_shared_stream_base()):  # type: ignore[misc]
    """Airflow 3.3 ack-mode producer: yields the watcher's items, writes the state in :meth:`advance`.

    Airflow calls :meth:`advance` with items whose trigger events it confirmed stored in its metadata DB, in
    order; only then is the state moved past them.

    :param trigger: The watcher's trigger (its configuration).
    :param handoff_key: Where its subscriber hands over the state store.
    """

    def __init__(self, trigger: WatchedTrigger, handoff_key: str) -> None:
        self.trigger = trigger
        self.handoff_key = handoff_key
        self.watcher: Watcher | None = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        store = await take_store(self.handoff_key)
        self.watcher = Watcher(self.trigger, store, markers=True)
        async for item, commit in self.watcher.items():
            yield item, commit

    async def advance(self, batch: Sequence[Any]) -> None:
        watcher = self.watcher
        if watcher is None:
            return
        last: Commit | None = None
        confirmed: list[str] = []
        records: list[dict[str, Any]] = []
        for entry in batch:
            commit: Commit | None = entry.broker_payload
            if not entry.outcome.is_clean:
                ids = ", ".join(commit.ids) if commit is not None and commit.ids else "none"
                watcher.halt(f"Airflow did not confirm storing an item (allocations: {ids}; {entry.outcome})")
                break
            if commit is not None:
                confirmed.extend(commit.ids)
                records.extend(commit.records)
                if commit.snapshot is not None:
                    last = commit
        if last is not None:
            # Items are confirmed in order: every id of the batch up to here is stored, not only the last item's.
            last = Commit(last.snapshot, tuple(confirmed), tuple(records))
            try:
                await watcher.commit(last)
            except Exception:  # never end the group from here: the trigger would restart in a loop
                log.exception("%r: writing the state failed", watcher)

    async def aclose(self) -> None:
        return None
