"""Checks by id: one list request for a batch of ids, or one GET each once the list endpoint is unusable."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api import LIST_UNUSABLE_STATUS_CODES, parse_allocation_record
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError
from airflow_provider_oes.triggers._events import error_event

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.hooks.async_client import ListPage, OESAsyncClient
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")


class IdChecker:
    """Asks the API about given waiting allocations and hands what it learns to the sink.

    The one place for "the list endpoint is unusable here (:data:`LIST_UNUSABLE_STATUS_CODES`): one GET each":
    after the first such answer every check goes one GET per id (a real "no such allocation" then reaches only
    the allocations it concerns).

    :param client: The connection's shared client.
    :param sink: The poller.
    """

    def __init__(self, client: OESAsyncClient, sink: ResultSink) -> None:
        self.client = client
        self.sink = sink
        self.rejected: OESError | None = None
        """The answer that made the list endpoint unusable here, once one came."""

    async def check_batch(
        self, batch: list[str], inspect: Callable[[list[Any]], None] | None = None
    ) -> dict[str, float]:
        """Check the waiting ids of ``batch`` with one list request; wake the final ones.

        :param batch: Allocation ids (those nobody waits for any more are skipped).
        :param inspect: Sees the raw records before they wake anyone (the reconciliation's miss check).
        :return: Per id checked, the server time (``Date``) of the answer; ids not checked (a transient failure,
            no ``Date``) are left out.
        """
        waiters = self.sink.waiters
        batch = [i for i in batch if i in waiters]  # some may have left while earlier batches ran
        if not batch:
            return {}
        if self.rejected is not None:
            return await self.check_singly(batch)
        page = await self._list_ids(batch)
        if page is None:
            return await self.check_singly(batch) if self.rejected is not None else {}
        if inspect is not None:
            inspect(page.records)
        seen = self._apply_records(batch, page.records)
        checked = {i: page.server_time for i in batch if i in seen} if page.server_time is not None else {}
        # Not in the list: the single GET settles it (a 404 there is a real "no such allocation").
        checked.update(await self.check_singly([i for i in batch if i not in seen]))
        return checked

    async def check_singly(self, ids: list[str]) -> dict[str, float]:
        """One GET per id still waited for; return the server times of those checked."""
        checked: dict[str, float] = {}
        for allocation_id in ids:
            server_time = await self.check_one(allocation_id)
            if server_time is not None:
                checked[allocation_id] = server_time
        return checked

    async def check_one(self, allocation_id: str) -> float | None:
        """Check one waiting allocation with the single GET; return the server time of the answer, if any.

        ``None`` when it was not checked (nobody waits for it any more, a transient failure: checked again
        later), when a permanent error ended its waiters, or when the answer carried no ``Date``.
        """
        sink = self.sink
        if allocation_id not in sink.waiters:
            return None
        try:
            allocation, server_time = await self.client.get_allocation_at(allocation_id, sink.enterprise_id)
        except OESError as exc:
            if is_transient(exc):
                log.warning("Could not check allocation %s this time, will try again: %s", allocation_id, exc)
                return None
            sink.finish(allocation_id, error_event(exc, allocation_id))
            return None
        sink.observe(allocation_id, allocation)
        return server_time

    async def _list_ids(self, batch: list[str]) -> ListPage | None:
        """One list request for ``batch``; ``None`` when there is nothing more to do with its answer now.

        A transient failure is logged (checked again later); a permanent error goes to every waiter of the
        batch; an answer saying the list endpoint is unusable sets :attr:`rejected`.
        """
        sink = self.sink
        try:
            return await self.client.list_allocations_page(
                sink.enterprise_id, allocation_ids=batch, page_size=len(batch), kind="id_batch"
            )
        except OESError as exc:
            if is_transient(exc):
                log.warning(
                    "Could not check %d allocations of enterprise %r this time, will try again: %s",
                    len(batch),
                    sink.enterprise_id,
                    exc,
                )
            elif exc.status_code in LIST_UNUSABLE_STATUS_CODES:
                if self.rejected is None:
                    self.rejected = exc
                    log.warning(
                        "OES poller %r/%r: the list endpoint rejected a check by ids (%s); checking with one GET "
                        "per allocation from now on.",
                        sink.key[0],
                        sink.enterprise_id,
                        exc,
                    )
            else:
                for allocation_id in batch:
                    sink.finish(allocation_id, error_event(exc, allocation_id))
            return None

    def _apply_records(self, batch: list[str], records: list[Any]) -> set[str]:
        """Wake the waiters of ``batch`` whose record in ``records`` is final; return the ids found in them."""
        sink = self.sink
        wanted = {allocation_id.lower(): allocation_id for allocation_id in batch}
        seen: set[str] = set()
        for record in records:
            record_id = record.get("id") if isinstance(record, dict) else None
            asked = wanted.get(record_id.lower()) if isinstance(record_id, str) else None
            if asked is None:
                continue  # not one we asked for (or no usable id): the single GET settles ours
            seen.add(asked)
            try:
                allocation = parse_allocation_record(record, allocation_id=asked, enterprise_id=sink.enterprise_id)
            except OESError as exc:
                sink.finish(asked, error_event(exc, asked))
                continue
            sink.observe(asked, allocation)
        return seen
