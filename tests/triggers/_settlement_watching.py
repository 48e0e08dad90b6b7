"""Helpers of the settlement watcher's tests: run a trigger, collect its settlements, move the simulator."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger
    from tests.triggers._event_fakes import Accessor


class Watching:
    """Runs ``trigger.run()`` in a task and collects the settlements of its events."""

    def __init__(self, trigger: SettlementEventTrigger, store: Accessor) -> None:
        trigger.asset_state_store = store
        self.trigger = trigger
        self.payloads: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.trigger.run():
            self.payloads.append(event.payload)

    def settlements(self) -> list[dict[str, Any]]:
        return [s for p in self.payloads for s in p["settlements"]]

    def emitted(self) -> list[tuple[str, str]]:
        """(id, status) of every emitted settlement, in emission order."""
        return [(s["id"], s["status"]) for s in self.settlements()]

    async def wait_for(self, count: int, timeout: float = 15) -> list[tuple[str, str]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.emitted()) < count:
            if self.task.done():
                raise AssertionError(f"the trigger ended: {self.task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {self.emitted()} after {timeout} s")
            await asyncio.sleep(0.05)
        return self.emitted()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
