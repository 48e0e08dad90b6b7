"""Acknowledged delivery, the watcher's side: emit again what no consuming run acknowledged (bounded by time).

Design and limits: ``docs/event-driven-acknowledgements.rst``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._acks import ACK_RETENTION, DeliveryKey, ack_key, delivery_key, read_ack

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from airflow_provider_oes.triggers._watching.window import StateStore

log = logging.getLogger("airflow_provider_oes.triggers.event")

LEDGER_VERSION = 1


@dataclass
class Delivery:
    """One emitted delivery: its record until acknowledged (or given up), when it went out, how often."""

    record: dict[str, Any] | None
    emitted_at: float
    attempts: int = 0
    settled_at: float | None = None
    """When it was found acknowledged by every consumer, or given up (then ``record`` is ``None``)."""

    def to_json(self) -> list[Any]:
        return [self.record, self.emitted_at, self.attempts, self.settled_at]

    @classmethod
    def from_json(cls, value: Any) -> Delivery:
        record, emitted_at, attempts, settled_at = value
        return cls(record, float(emitted_at), int(attempts), None if settled_at is None else float(settled_at))


class Redelivery:
    """The ledger of emitted deliveries, kept in the asset state store beside the window.

    :param store: The watcher's state store (``None``: in memory only).
    :param key: The ledger's key.
    :param consumers: The consuming DAG ids (``acknowledged_by``).
    :param after: Seconds before an unacknowledged delivery is emitted again.
    :param max_attempts: Re-emissions before giving up on one delivery (logged as an error).
    :param wall: Wall clock, epoch seconds (the ledger outlives the process).
    :param noun: What a record is, in log lines.
    """

    def __init__(
        self,
        store: StateStore | None,
        key: str,
        consumers: tuple[str, ...],
        after: float,
        max_attempts: int,
        wall: Callable[[], float],
        noun: str = "allocation",
    ) -> None:
        self.store = store
        self.key = key
        self.consumers = consumers
        self.after = after
        self.max_attempts = max_attempts
        self._wall = wall
        self.noun = noun
        self.entries: dict[str, Delivery] = {}
        self.redelivered = 0
        """Re-emissions handed to the watcher (for tests and logs)."""
        self._loaded = False
        self._dirty = False

    async def load(self) -> None:
        """Read the ledger once (an unreadable one is logged and started afresh)."""
        if self._loaded:
            return
        if self.store is not None:
            value = await self.store.read(self.key)
            try:
                if value is not None:
                    if not isinstance(value, dict) or value.get("v") != LEDGER_VERSION:
                        raise ValueError(f"unknown ledger format {str(value)[:80]!r}")
                    stored = {k: Delivery.from_json(v) for k, v in value["entries"].items()}
                    self.entries = {**stored, **self.entries}  # deliveries confirmed before it could be read
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "The delivery ledger %s is unreadable (%s): unacknowledged deliveries are lost.", self.key, exc
                )
        self._loaded = True

    def confirmed(self, records: Iterable[dict[str, Any]]) -> None:
        """Airflow confirmed an event with these records (first emissions, or re-emissions)."""
        now = self._wall()
        for record in records:
            key = delivery_key(record)
            if key is None:
                continue
            name = "/".join(key)
            entry = self.entries.get(name)
            if entry is None or entry.settled_at is not None:
                self.entries[name] = Delivery(dict(record), now)
            else:
                entry.emitted_at = now
            self._dirty = True

    async def due(self) -> list[dict[str, Any]]:
        """Records to emit again now; settles acknowledged deliveries and forgets those past retention."""
        await self.load()
        now = self._wall()
        again: list[dict[str, Any]] = []
        for name, entry in list(self.entries.items()):
            if entry.settled_at is not None:
                if now - entry.settled_at >= ACK_RETENTION.total_seconds():
                    await self._forget(name, entry)
                continue
            if entry.record is None or now - entry.emitted_at < self.after:
                continue
            if await self._acknowledged(entry.record):
                entry.record, entry.settled_at = None, now
            elif entry.attempts >= self.max_attempts:
                log.error(
                    "%s %s (%s) was emitted %d times and no run of %s acknowledged it: it is in a run that "
                    "never acknowledged it (failed or stuck; clear it). Not emitting it again.",
                    self.noun.capitalize(),
                    entry.record.get("id"),
                    entry.record.get("status"),
                    entry.attempts + 1,
                    ", ".join(self.consumers),
                )
                entry.record, entry.settled_at = None, now
            else:
                entry.attempts += 1
                entry.emitted_at = now
                again.append(entry.record)
            self._dirty = True
        if again:
            self.redelivered += len(again)
            log.warning(
                "No run of %s acknowledged %d %s(s) within %.0f s of their event: emitting them again: %s",
                ", ".join(self.consumers),
                len(again),
                self.noun,
                self.after,
                ", ".join(str(r.get("id")) for r in again),
            )
        return again

    async def _acknowledged(self, record: dict[str, Any]) -> bool:
        key = delivery_key(record)
        if key is None or self.store is None:
            return self.store is None  # nowhere to read acknowledgements from: nothing to re-emit on
        for consumer in self.consumers:
            if read_ack(await self.store.read(ack_key(consumer, key))) is None:
                return False
        return True

    async def _forget(self, name: str, entry: Delivery) -> None:
        key = DeliveryKey(*name.split("/", 2))
        if self.store is not None:
            for consumer in self.consumers:
                await self.store.delete(ack_key(consumer, key))
        del self.entries[name]
        self._dirty = True

    async def save(self) -> None:
        """Write the ledger if it changed (a failure is logged; the next call tries again)."""
        if not self._dirty or self.store is None:
            return
        try:
            await self.store.write(
                self.key, {"v": LEDGER_VERSION, "entries": {k: v.to_json() for k, v in self.entries.items()}}
            )
        except Exception as exc:
            log.error("Could not write the delivery ledger %s (%s: %s)", self.key, type(exc).__name__, exc)
            return
        self._dirty = False
