"""The one per-event-loop registry: a value per running loop, made on first use, dropped with its loop."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """One value per event loop (``dag.test()`` runs each trigger in a fresh loop; nothing is shared across).

    :param factory: Makes the value of a loop on its first :meth:`get`.
    """

    __slots__ = ("_factory", "_values")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        """The running loop's value, made now if it has none."""
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._values[loop] = self._factory()
        return value

    def peek(self) -> T | None:
        """The running loop's value, if it has one (never makes one)."""
        return self._values.get(asyncio.get_running_loop())

    def values(self) -> list[T]:
        """The values of every loop alive (a generator's cleanup may run after its own loop stopped)."""
        return list(self._values.values())
