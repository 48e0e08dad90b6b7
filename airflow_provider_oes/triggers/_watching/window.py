"""What an asset watcher remembers (:class:`EventWindow`, pure) and where (:class:`StateStore`, Airflow 3.3).

The snapshot is plain JSON: ``{"v": 1, "floor": ..., "emitted": {id: updatedAt}, "inflight": [id, ...]}``
(``docs/internals/event-trigger.rst``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._time import format_time, parse_time
from airflow_provider_oes.triggers._watching.resource import ALLOCATIONS, WatchedResource

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow_provider_oes.triggers._watching.resource import WatchedRecord

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class EventWindow:
    """Which final allocations were already emitted, within the overlap window of the feed's watermark.

    :param query: The trigger's filters (a :class:`~airflow_provider_oes._api.ListQuery` for allocations).
    :param floor: Rows updated before this are never emitted (before the start, or already handled).
    :param overlap: How far below the feed's watermark rows may still show up (clock and commit skew).
    :param emitted: Ids emitted at or above ``floor - memory``, with their ``updatedAt``.
    :param memory: How far below the floor emitted ids are remembered: a row that shows up there and was not
        emitted (committed later than the overlap allows; found by the reconciliation) is emitted, loudly.
    """

    query: Any
    floor: datetime
    overlap: timedelta
    emitted: dict[str, datetime] = field(default_factory=dict)
    memory: timedelta = timedelta(0)
    origin: datetime | None = None
    """Where the watcher started (its first floor): nothing before it is emitted, late or not."""
    late: int = 0
    """Rows accepted below the floor (late beyond the overlap)."""
    resource: WatchedResource = ALLOCATIONS
    """What is watched: which records are wanted, and the key a delivery is remembered by."""

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = self.floor

    def accept(self, allocations: Iterable[WatchedRecord]) -> list[WatchedRecord]:
        """The allocations of one poll that are new and match, in ``updatedAt`` order; remember them.

        :param allocations: Parsed rows of the poll (any order, duplicates allowed).
        """
        new: dict[str, WatchedRecord] = {}
        for allocation in allocations:
            key = self.resource.key(allocation).lower()
            updated = allocation.updated_at.astimezone(timezone.utc)
            if key in self.emitted or key in new or updated < self._lowest() or not self._wanted(allocation):
                continue
            if updated < self.floor:
                self.late += 1
                log.warning(
                    "%s %s became %s with updatedAt %s, %.0f s below the watcher's floor: committed later "
                    "than the feed's overlap (%.0f s) allows, caught by the watcher's reconciliation. Raise the "
                    "connection's feed_overlap above that.",
                    self.resource.noun.capitalize(),
                    allocation.id,
                    allocation.status,
                    format_time(updated),
                    (self.floor - updated).total_seconds(),
                    self.overlap.total_seconds(),
                )
            new[key] = allocation
        for key, allocation in new.items():
            self.emitted[key] = allocation.updated_at.astimezone(timezone.utc)
        return sorted(new.values(), key=lambda a: (a.updated_at, a.id))

    def _lowest(self) -> datetime:
        lowest = self.floor - self.memory
        return lowest if self.origin is None else max(lowest, self.origin)

    def _wanted(self, allocation: WatchedRecord) -> bool:
        return self.resource.wanted(self.query, allocation)

    def advance(self, watermark: datetime | None) -> None:
        """The feed vouches for every change up to ``watermark``: raise the floor to ``watermark - overlap``.

        :param watermark: The feed's watermark (server time), or ``None`` when it has none yet.
        """
        if watermark is None:
            return
        floor = watermark.astimezone(timezone.utc) - self.overlap
        if floor > self.floor:
            self.floor = floor
            self.emitted = {k: t for k, t in self.emitted.items() if t >= floor - self.memory}

    def snapshot(self, inflight: Sequence[str] = (), holding: Iterable[WatchedRecord] = ()) -> dict[str, Any]:
        """The window as plain JSON (what :class:`StateStore` writes).

        :param inflight: Ids handed to Airflow whose storage is not confirmed yet.
        :param holding: Accepted allocations not emitted yet (a capped backlog): left out of ``emitted``, and
            the floor kept at or below the oldest of them, so that a restart reads them again.
        """
        held = {self.resource.key(a).lower(): a.updated_at.astimezone(timezone.utc) for a in holding}
        floor = min([self.floor, *held.values()])
        return {
            "v": STATE_VERSION,
            "floor": format_time(floor),
            "emitted": {k: format_time(t) for k, t in sorted(self.emitted.items()) if k not in held},
            "inflight": sorted(inflight),
            "origin": format_time(self.origin or floor),
        }

    @classmethod
    def restore(
        cls, query: Any, overlap: timedelta, state: dict[str, Any], resource: WatchedResource = ALLOCATIONS
    ) -> tuple[EventWindow, list[str]]:
        """Rebuild a window from :meth:`snapshot`; return it and the ``inflight`` ids of the snapshot.

        ``inflight`` ids are *not* counted as emitted: Airflow did not confirm it stored their event before
        the previous triggerer stopped, so they are emitted again (at least once rather than maybe never).

        :raises ValueError: when the state is not a snapshot this version understands.
        """
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            raise ValueError(f"unknown state format {str(state)[:80]!r}")
        floor = parse_time(state["floor"], "the stored floor")
        emitted_raw = state.get("emitted") or {}
        if not isinstance(emitted_raw, dict):
            raise ValueError("the stored 'emitted' is not an object")
        emitted = {str(k).lower(): parse_time(v, "a stored updatedAt") for k, v in emitted_raw.items()}
        inflight = [str(i).lower() for i in state.get("inflight") or [] if str(i).lower() not in emitted]
        origin = parse_time(state["origin"], "the stored origin") if state.get("origin") else floor
        window = cls(query=query, floor=floor, overlap=overlap, emitted=emitted, origin=origin, resource=resource)
        return window, inflight


class StateStore:
    """The trigger's snapshot in the ``asset_state_store`` of every asset it watches.

    Airflow keys a watcher trigger by its kwargs: identical watchers on two assets are one trigger, and its
    accessor then refuses the unsubscripted shortcut. The snapshot is written to each watched asset and read
    back from the first that has one (they are always written together).

    :param accessors: ``trigger.asset_state_store`` (Airflow 3.3's ``AssetStateStoreAccessors``).
    :param key: The state key (one per stream and statuses, so the cleared and released watchers of one asset
        keep separate states; not the other filters, so editing them keeps the floor).
    :param legacy_key: The key of versions up to 0.2.0 (a fingerprint of every filter): read when ``key`` has
        nothing yet, and deleted after the first write under ``key``.
    """

    def __init__(self, accessors: Any, key: str, legacy_key: str | None = None) -> None:
        self.key = key
        self.legacy_key = legacy_key
        self._accessors = each_asset(accessors)
        self._migrating = False
        self.writes = 0
        """Snapshots written (for tests and logs)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, assets={len(self._accessors)})"

    async def load(self) -> dict[str, Any] | None:
        """The stored snapshot (under the legacy key if the current one has none), or ``None`` on first start."""
        value = await self.read(self.key)
        if value is None and self.legacy_key is not None:
            value = await self.read(self.legacy_key)
            if value is not None:
                self._migrating = True
                log.info("Watcher state found under the key of an earlier version; moving it to %s.", self.key)
        if value is None:
            return None
        return dict(value) if isinstance(value, dict) else {"invalid": value}

    async def save(self, snapshot: dict[str, Any]) -> None:
        """Write the snapshot to every watched asset (then drop a migrated legacy key)."""
        await self.write(self.key, snapshot)
        self.writes += 1
        if self._migrating and self.legacy_key is not None:
            await self.delete(self.legacy_key)
            self._migrating = False

    async def read(self, key: str) -> Any:
        """The value of ``key`` in the first watched asset's store that has one."""
        for accessor in self._accessors:
            value = await accessor.aget(key, None)
            if value is not None:
                return value
        return None

    async def write(self, key: str, value: Any) -> None:
        """Write ``key`` in every watched asset's store."""
        for accessor in self._accessors:
            await accessor.aset(key, value)

    async def delete(self, key: str) -> None:
        """Delete ``key`` from every watched asset's store."""
        for accessor in self._accessors:
            await accessor.adelete(key)


def each_asset(accessors: Any) -> list[Any]:
    """One accessor per watched asset.

    ``AssetStateStoreAccessors`` has a public unsubscripted shortcut only for exactly one asset; with several,
    the per-asset accessors are taken from its mappings (``_by_name`` / ``_by_uri`` in Airflow 3.3.2).
    """
    by_name = getattr(accessors, "_by_name", None)
    by_uri = getattr(accessors, "_by_uri", None)
    if isinstance(by_name, dict) and isinstance(by_uri, dict):
        found = [*by_name.values(), *by_uri.values()]
        if found:
            return found
    return [accessors]
