"""The id-batch and single strategies: ask about every waiting record once per sweep."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.triggers._polling.strategy import ID_BATCHES, SINGLE, Fallback
from airflow_provider_oes.triggers._shared.connections import CONCURRENCY
from airflow_provider_oes.triggers._shared.waiters import bounded, smallest_interval

if TYPE_CHECKING:
    from airflow_provider_oes.hooks.async_client import OESAsyncClient
    from airflow_provider_oes.triggers._polling.checks import IdChecker
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")


class IdBatchStrategy:
    """Every poll interval, one sweep: ``batch_size`` ids per list request, or (``single``) one GET each.

    When the list endpoint turns out unusable, the sweep goes on one GET each and the strategy hands over to
    ``single`` (:class:`~airflow_provider_oes.triggers._polling.strategy.Fallback`).

    :param sink: The poller.
    :param checker: The id checks (shared with other strategies of the poller).
    :param client: The connection's client (its request count is logged per sweep).
    :param batch_size: Ids per list request.
    :param single: One GET per record from the start.
    """

    def __init__(
        self,
        sink: ResultSink[Any],
        checker: IdChecker[Any],
        client: OESAsyncClient,
        batch_size: int,
        *,
        single: bool = False,
    ) -> None:
        self.sink = sink
        self.checker = checker
        self.client = client
        self.batch_size = batch_size
        self.kind = SINGLE if single else ID_BATCHES

    def added(self, record_id: str, last_check: float | None) -> None:
        """Nothing to do: the next sweep asks about it."""

    async def run(self) -> Fallback | None:
        """Sweep once per interval (the smallest of the waiters') until nobody waits."""
        sink = self.sink
        loop = asyncio.get_running_loop()
        while sink.waiters:
            if self.kind == ID_BATCHES and self.checker.rejected is not None:
                return Fallback(SINGLE, f"the list endpoint rejected a check by ids ({self.checker.rejected})")
            started = loop.time()
            waiting = len(sink.waiters)
            sent_before = self.client.requests_sent
            finished_before = sink.finished
            await self.sweep()
            seconds = loop.time() - started
            # One line per sweep: shows operators the batching at work (requests vs records).
            log.info(
                "OES poller %r/%r: checked %d %s with %d requests in %.2f s; %d became final",
                sink.key[0],
                sink.enterprise_id,
                waiting,
                sink.resource.plural,
                self.client.requests_sent - sent_before,
                seconds,
                sink.finished - finished_before,
            )
            sink.polled(seconds)
            if not sink.waiters:
                break
            delay = started + smallest_interval(sink.waiters) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        return None

    async def sweep(self) -> None:
        """Ask once about every record waited for now."""
        ids = list(self.sink.waiters)
        if self.kind == SINGLE or self.checker.rejected is not None:
            await bounded(ids, self.checker.check_one, CONCURRENCY)
        else:
            size = self.batch_size
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            await bounded(batches, self.checker.check_batch, CONCURRENCY)
