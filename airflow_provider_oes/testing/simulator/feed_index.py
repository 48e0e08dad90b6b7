"""
The index behind the change feed: per enterprise, the final (cleared/released) allocations kept sorted.

A feed query (``statuses`` within cleared/released, ``sortField=updatedAt``) then costs a binary search
and the page, not a sort of every row: at 100,000 allocations a page is served in about a millisecond.
Keys are ``(updatedAt ms, createdAt ms, id)``; ascending key order is exactly the API's ascending order
(``updatedAt``, then the final ``createdAt`` asc, ``id`` asc). The descending order reverses the groups
of equal ``updatedAt`` but keeps each group ascending, because the final tiebreak is always ascending.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: (updatedAt ms, createdAt ms, id)
Key = tuple[int, int, str]


class FinalIndex:
    """Sorted keys of final allocations, one list per enterprise (the caller holds the state lock)."""

    def __init__(self) -> None:
        self._keys: dict[str, list[Key]] = {}

    def clear(self) -> None:
        self._keys.clear()

    def add(self, enterprise_id: str, key: Key) -> None:
        keys = self._keys.setdefault(enterprise_id, [])
        if not keys or keys[-1] < key:
            keys.append(key)  # the common case: the newest flip goes last
        else:
            bisect.insort(keys, key)

    def remove(self, enterprise_id: str, key: Key) -> None:
        keys = self._keys.get(enterprise_id, [])
        index = bisect.bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            del keys[index]

    def count(self, enterprise_id: str) -> int:
        return len(self._keys.get(enterprise_id, ()))

    def iterate(self, enterprise_id: str, *, descending: bool, start: int = 0) -> Iterator[Key]:
        """
        Yield keys in the API's order for ``sortField=updatedAt``, from position ``start`` of that order.

        :param enterprise_id: whose allocations.
        :param descending: ``sortDirection=DESC``.
        :param start: how many leading keys of that order to skip (found by binary search, not walked).
        """
        keys = self._keys.get(enterprise_id, [])
        if not descending:
            for index in range(start, len(keys)):
                yield keys[index]
            return
        if start >= len(keys):
            return
        # The key at descending position ``start`` lies in the group of equal updatedAt holding ascending
        # position n - 1 - start; groups are laid out in reverse, each one ascending.
        updated = keys[len(keys) - 1 - start][0]
        low = bisect.bisect_left(keys, (updated,))
        high = bisect.bisect_left(keys, (updated + 1,))
        first = low + start - (len(keys) - high)
        yield from keys[first:high]
        high = low
        while high > 0:
            low = bisect.bisect_left(keys, (keys[high - 1][0],), 0, high)
            yield from keys[low:high]
            high = low
