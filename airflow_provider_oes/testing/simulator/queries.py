"""
The list endpoint's query over the state: filters, sort and page, as BitGo's spec describes them.

* Filters: ``allocationIds``, ``types``, ``statuses``, ``currencies``, ``connectionIds``, ``partnerIds``
  (each a comma-separated list; a row matches when its value is in the list), ``createdOnOrAfter`` and
  ``createdBefore`` (the spec's description: "created on or before this date", so both bounds inclusive).
* Sort: ``sortField`` (``id`` | ``updatedAt`` | ``quantity`` | ``currency``), ``sortDirection`` (``ASC``
  default | ``DESC``); the final sort is always ``createdAt`` asc then ``id`` asc, whatever the direction.
  Without ``sortField`` the order is that final sort alone.
* Page: ``pageNumber`` from 0 skips ``pageSize * pageNumber`` rows.

A feed query (``sortField=updatedAt`` and ``statuses`` within cleared/released) is answered from the
feed index without sorting; every other query filters and sorts the enterprise's rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.testing.simulator._common import FINAL_STATUSES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_oes.testing.simulator.state import Allocation, State


@dataclass
class ListQuery:
    """The list endpoint's query parameters, validated (bounds in epoch microseconds)."""

    allocation_ids: list[str] | None = None
    statuses: list[str] | None = None
    types: list[str] | None = None
    currencies: list[str] | None = None
    connection_ids: list[str] | None = None
    partner_ids: list[str] | None = None
    created_on_or_after_us: int | None = None
    created_before_us: int | None = None
    page_number: int = 0
    page_size: int = 100
    sort_field: str | None = None
    sort_direction: str = "ASC"

    @property
    def is_feed(self) -> bool:
        """Whether the feed index can answer it: final rows only, sorted by ``updatedAt``."""
        return self.sort_field == "updatedAt" and self.statuses is not None and set(self.statuses) <= FINAL_STATUSES

    def matches(self, alloc: Allocation) -> bool:
        """Every filter but the enterprise (the caller's candidates are already the enterprise's)."""
        checks: tuple[tuple[list[str] | None, str], ...] = (
            (self.allocation_ids, alloc.id),
            (self.statuses, alloc.status),
            (self.types, alloc.type),
            (self.currencies, alloc.currency),
            (self.connection_ids, alloc.connection_id),
            (self.partner_ids, alloc.partner_id),
        )
        if any(allowed is not None and value not in allowed for allowed, value in checks):
            return False
        created_us = alloc.created_ms * 1000
        after, before = self.created_on_or_after_us, self.created_before_us
        return not ((after is not None and created_us < after) or (before is not None and created_us > before))

    def only_statuses_filter(self) -> bool:
        """No filter but ``statuses`` naming both final statuses: the feed index is the answer itself."""
        others = (
            self.allocation_ids,
            self.types,
            self.currencies,
            self.connection_ids,
            self.partner_ids,
            self.created_on_or_after_us,
            self.created_before_us,
        )
        return all(value is None for value in others) and set(self.statuses or ()) == FINAL_STATUSES


def _sort_key(sort_field: str, alloc: Allocation) -> Any:
    if sort_field == "id":
        return alloc.id
    if sort_field == "updatedAt":
        return alloc.updated_ms
    if sort_field == "currency":
        return alloc.currency
    try:
        return (0, int(alloc.quantity), "")
    except ValueError:
        return (1, 0, alloc.quantity)


def run_list_query(state: State, enterprise_id: str, query: ListQuery) -> list[Allocation]:
    """
    Return the page of allocations the query asks for (caller holds the state lock and has advanced it).

    :param state: the simulator state.
    :param enterprise_id: the enterprise in the path.
    :param query: the validated query.
    """
    start = query.page_number * query.page_size
    if query.is_feed:
        rows = _feed_rows(state, enterprise_id, query, start)
        return list(itertools.islice(rows, query.page_size))
    candidates: Iterable[Allocation]
    if query.allocation_ids is not None:
        found = (state.allocations.get(i) for i in dict.fromkeys(query.allocation_ids))
        candidates = (a for a in found if a is not None)
    else:
        candidates = state.allocations.values()
    matching = [a for a in candidates if a.enterprise_id == enterprise_id and query.matches(a)]
    matching.sort(key=lambda a: (a.created_ms, a.id))
    if query.sort_field is not None:
        field = query.sort_field
        # sort is stable, also with reverse=True: rows of equal value keep the final ascending order
        matching.sort(key=lambda a: _sort_key(field, a), reverse=query.sort_direction == "DESC")
    return matching[start : start + query.page_size]


def _feed_rows(state: State, enterprise_id: str, query: ListQuery, start: int) -> Iterable[Allocation]:
    descending = query.sort_direction == "DESC"
    if query.only_statuses_filter():
        keys = state.index.iterate(enterprise_id, descending=descending, start=start)
        return (state.allocations[key[2]] for key in keys)
    keys = state.index.iterate(enterprise_id, descending=descending)
    rows = (state.allocations[key[2]] for key in keys)
    return itertools.islice((a for a in rows if query.matches(a)), start, None)
