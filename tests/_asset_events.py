"""In-memory stand-ins for what Airflow 3.3 hands a task: an asset's events (``inlet_events``) queried the way
the execution API does, and an asset's state store."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class InletEvents:
    """``inlet_events`` of a task for one asset, answering queries like Airflow 3.3.2's execution API.

    Bounds are inclusive (``timestamp >= after``, ``<= before``), the order is by timestamp alone, ``limit``
    cuts the ordered list; every subscript starts a new query (as ``InletEventsAccessors.__getitem__`` does).
    Each answered query is recorded in ``queries`` as ``(after, before, limit, number of events returned)``.

    :param asset: The asset (subscripting with another one fails).
    :param stored: The events (with ``timestamp``), in any order.
    :param answer: Answers ``(after, before, ascending, limit)`` instead of ``stored`` (the benchmark's
        JSON-backed store).
    """

    def __init__(self, asset: Any, stored: list[Any], answer: Callable[..., list[Any]] | None = None) -> None:
        self.asset, self.stored, self.answer = asset, stored, answer
        self.queries: list[tuple[str | None, str | None, int | None, int]] = []

    def __getitem__(self, asset: Any) -> _Query:
        assert asset == self.asset
        return _Query(self)


class _Query:
    def __init__(self, owner: InletEvents) -> None:
        self.owner = owner
        self._after: str | None = None
        self._before: str | None = None
        self._ascending = True
        self._limit: int | None = None
        self._found: list[Any] | None = None

    def after(self, value: str) -> _Query:
        self._after = value
        return self

    def before(self, value: str) -> _Query:
        self._before = value
        return self

    def ascending(self, ascending: bool = True) -> _Query:
        self._ascending = ascending
        return self

    def limit(self, limit: int) -> _Query:
        self._limit = limit
        return self

    def _answer(self) -> list[Any]:
        # Answered once per query, like the accessor's cached ``_asset_events``.
        if self._found is None:
            answer = self.owner.answer or self._query
            self._found = answer(self._after, self._before, self._ascending, self._limit)
            self.owner.queries.append((self._after, self._before, self._limit, len(self._found)))
        return self._found

    def _query(self, after: str | None, before: str | None, ascending: bool, limit: int | None) -> list[Any]:
        low = datetime.fromisoformat(after) if after else None
        high = datetime.fromisoformat(before) if before else None
        found = [
            e
            for e in self.owner.stored
            if (low is None or e.timestamp >= low) and (high is None or e.timestamp <= high)
        ]
        found.sort(key=lambda e: e.timestamp, reverse=not ascending)
        return found[:limit] if limit else found

    def __iter__(self) -> Any:
        return iter(self._answer())

    def __len__(self) -> int:
        return len(self._answer())


class AssetStateStore:
    """``context["asset_state_store"]``: one key/value store per asset (``store[asset].get/set/delete``)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []

    def __getitem__(self, asset: Any) -> AssetStateStore:
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        assert value is not None
        self.values[key] = value
        self.writes.append((key, value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def dag_run(dag_id: str, run_id: str) -> SimpleNamespace:
    """What ``context["dag_run"]`` and an event's ``created_dagruns`` entries expose."""
    return SimpleNamespace(dag_id=dag_id, run_id=run_id)
