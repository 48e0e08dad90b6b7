"""What an :class:`~airflow_provider_oes.triggers.event.AllocationEventTrigger` remembers, and where.

:class:`EventWindow` decides which allocations of a poll are new (pure, no I/O): an allocation is emitted
when it matches the trigger's filters, its ``updatedAt`` is at or above the window's *floor*, and its id is
not among the ids already emitted. The floor follows the change feed's watermark minus the overlap, so every
row the feed can still deliver again (overlap, paging shifts, a restart paging back) is either below the
floor or remembered by id. Only ids at or above the floor are kept: memory and state stay bounded by the
changes of one overlap window.

:class:`StateStore` keeps a snapshot of the window in Airflow 3.3's ``asset_state_store`` of the watched
asset(s), under a key derived from the trigger's query, so a triggerer restart (or Airflow re-creating the
trigger) resumes exactly where the last *confirmed* event left off. The snapshot is plain JSON::

    {"v": 1, "floor": "<ISO time>", "emitted": {"<id>": "<updatedAt>", ...}, "inflight": ["<id>", ...]}

``inflight`` lists the ids of an event handed to Airflow whose storage Airflow has not confirmed yet: after a
crash they are emitted again (at least once), and named in a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow_provider_oes.models import Allocation

log = logging.getLogger(__name__)

STATE_VERSION = 1


def parse_time(value: object, what: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (``Z`` accepted, naive means UTC) or a datetime.

    :param value: The value to read.
    :param what: Its name, for the error message.
    :raises OESInvalidRequestError: naming the bad value.
    """
    from airflow_provider_oes.exceptions import OESInvalidRequestError

    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise OESInvalidRequestError(
                f"{what} must be an ISO 8601 date-time like '2026-01-31T12:00:00Z', got {value[:60]!r}"
            ) from None
    else:
        raise OESInvalidRequestError(f"{what} must be an ISO 8601 date-time string, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z`` (exact round trip through :func:`parse_time`)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class EventQuery:
    """The trigger's filters, mirroring the list endpoint's own (``None`` = no filter on that field).

    :param statuses: Final statuses to emit (``cleared`` and/or ``released``).
    :param types: ``allocation`` and/or ``deallocation``.
    :param currencies: Currency ids such as ``ofctbtc``.
    :param connection_ids: OES connection ids (the allocation's ``connectionId``).
    """

    statuses: tuple[str, ...]
    types: tuple[str, ...] | None = None
    currencies: tuple[str, ...] | None = None
    connection_ids: tuple[str, ...] | None = None

    def list_params(self) -> dict[str, str]:
        """The list endpoint's query parameters for these filters (comma-separated, as the API takes them)."""
        params = {"statuses": ",".join(self.statuses)}
        for name, values in (
            ("types", self.types),
            ("currencies", self.currencies),
            ("connectionIds", self.connection_ids),
        ):
            if values is not None:
                params[name] = ",".join(values)
        return params

    def matches(self, allocation: Allocation) -> bool:
        """The same filters, applied locally (a feed shared with a broader query may deliver more)."""
        if not allocation.is_terminal or str(allocation.status) not in self.statuses:
            return False
        if self.types is not None and str(allocation.type) not in self.types:
            return False
        if self.currencies is not None and allocation.amount.currency not in self.currencies:
            return False
        return self.connection_ids is None or allocation.connection_id in self.connection_ids


@dataclass
class EventWindow:
    """Which final allocations were already emitted, within the overlap window of the feed's watermark.

    :param query: The trigger's filters.
    :param floor: Rows updated before this are never emitted (before the start, or already handled).
    :param overlap: How far below the feed's watermark rows may still show up (clock and commit skew).
    :param emitted: Ids emitted at or above the floor, with their ``updatedAt``.
    """

    query: EventQuery
    floor: datetime
    overlap: timedelta
    emitted: dict[str, datetime] = field(default_factory=dict)

    def accept(self, allocations: Iterable[Allocation]) -> list[Allocation]:
        """The allocations of one poll that are new and match, in ``updatedAt`` order; remember them.

        :param allocations: Parsed rows of the poll (any order, duplicates allowed).
        """
        new: dict[str, Allocation] = {}
        for allocation in allocations:
            key = allocation.id.lower()
            updated = allocation.updated_at.astimezone(timezone.utc)
            if key in self.emitted or key in new or updated < self.floor or not self.query.matches(allocation):
                continue
            new[key] = allocation
        for key, allocation in new.items():
            self.emitted[key] = allocation.updated_at.astimezone(timezone.utc)
        return sorted(new.values(), key=lambda a: (a.updated_at, a.id))

    def advance(self, watermark: datetime | None) -> None:
        """The feed vouches for every change up to ``watermark``: raise the floor to ``watermark - overlap``.

        :param watermark: The feed's watermark (server time), or ``None`` when it has none yet.
        """
        if watermark is None:
            return
        floor = watermark.astimezone(timezone.utc) - self.overlap
        if floor > self.floor:
            self.floor = floor
            self.emitted = {k: t for k, t in self.emitted.items() if t >= floor}

    def snapshot(self, inflight: Sequence[str] = ()) -> dict[str, Any]:
        """The window as plain JSON (what :class:`StateStore` writes).

        :param inflight: Ids handed to Airflow whose storage is not confirmed yet.
        """
        return {
            "v": STATE_VERSION,
            "floor": format_time(self.floor),
            "emitted": {k: format_time(t) for k, t in sorted(self.emitted.items())},
            "inflight": sorted(inflight),
        }

    @classmethod
    def restore(cls, query: EventQuery, overlap: timedelta, state: dict[str, Any]) -> tuple[EventWindow, list[str]]:
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
        return cls(query=query, floor=floor, overlap=overlap, emitted=emitted), inflight


class StateStore:
    """The trigger's snapshot in the ``asset_state_store`` of every asset it watches.

    Airflow keys a watcher trigger by its kwargs: identical watchers on two assets are one trigger, and its
    accessor then refuses the unsubscripted shortcut. The snapshot is written to each watched asset and read
    back from the first that has one (they are always written together).

    :param accessors: ``trigger.asset_state_store`` (Airflow 3.3's ``AssetStateStoreAccessors``).
    :param key: The state key (one per query, so two watchers of one asset keep separate states).
    """

    def __init__(self, accessors: Any, key: str) -> None:
        self.key = key
        self._accessors = _each_asset(accessors)
        self.writes = 0
        """Snapshots written (for tests and logs)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, assets={len(self._accessors)})"

    async def load(self) -> dict[str, Any] | None:
        """The stored snapshot, or ``None`` on first start."""
        for accessor in self._accessors:
            value = await accessor.aget(self.key, None)
            if value is not None:
                return dict(value) if isinstance(value, dict) else {"invalid": value}
        return None

    async def save(self, snapshot: dict[str, Any]) -> None:
        """Write the snapshot to every watched asset."""
        for accessor in self._accessors:
            await accessor.aset(self.key, snapshot)
        self.writes += 1


def _each_asset(accessors: Any) -> list[Any]:
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
