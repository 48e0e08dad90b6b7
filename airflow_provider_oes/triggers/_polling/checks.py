"""Checks by id: one list request for a batch of ids, or one GET each once the list endpoint is unusable."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow_provider_oes._api import LIST_UNUSABLE_STATUS_CODES
from airflow_provider_oes._retry import is_transient
from airflow_provider_oes.exceptions import OESError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.hooks.async_client import OESAsyncClient
    from airflow_provider_oes.triggers._polling.strategy import ResultSink

log = logging.getLogger("airflow_provider_oes.triggers._polling")

R = TypeVar("R")


class IdChecker(Generic[R]):
    """Asks the API about given waiting records (the sink's resource says how) and hands what it learns to the sink.

    The one place for "the list endpoint is unusable here (:data:`LIST_UNUSABLE_STATUS_CODES`): one GET each":
    after the first such answer every check goes one GET per id (a real "no such record" then reaches only
    the records it concerns).

    :param client: The connection's shared client.
    :param sink: The poller.
    """

    def __init__(self, client: OESAsyncClient, sink: ResultSink[R]) -> None:
        self.client = client
        self.sink = sink
        self.resource = sink.resource
        self.rejected: OESError | None = None
        """The answer that made the list endpoint unusable here, once one came."""

    async def check_batch(
        self, batch: list[str], inspect: Callable[[list[Any]], None] | None = None
    ) -> dict[str, float]:
        """Check the waiting ids of ``batch`` with one list request; wake those whose wait ends.

        :param batch: Record ids (those nobody waits for any more are skipped).
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
        answer = await self._list_ids(batch)
        if answer is None:
            return await self.check_singly(batch) if self.rejected is not None else {}
        records, server_time = answer
        if inspect is not None:
            inspect(records)
        seen = self._apply_records(batch, records)
        checked = {i: server_time for i in batch if i in seen} if server_time is not None else {}
        # Not in the list (or to be read in full): the single GET settles it (a 404 there is a real "no such record").
        checked.update(await self.check_singly([i for i in batch if i not in seen]))
        return checked

    async def check_singly(self, ids: list[str]) -> dict[str, float]:
        """One GET per id still waited for; return the server times of those checked."""
        checked: dict[str, float] = {}
        for record_id in ids:
            server_time = await self.check_one(record_id)
            if server_time is not None:
                checked[record_id] = server_time
        return checked

    async def check_one(self, record_id: str) -> float | None:
        """Check one waiting record with the single GET; return the server time of the answer, if any.

        ``None`` when it was not checked (nobody waits for it any more, a transient failure: checked again
        later), when a permanent error ended its waiters, or when the answer carried no ``Date``.
        """
        sink = self.sink
        if record_id not in sink.waiters:
            return None
        try:
            record, server_time = await self.resource.read_one(self.client, record_id, sink.enterprise_id)
        except OESError as exc:
            if is_transient(exc):
                log.warning("Could not check %s %s this time, will try again: %s", self.resource.name, record_id, exc)
                return None
            sink.finish(record_id, self.resource.error_event(exc, record_id))
            return None
        sink.observe(record_id, record)
        return server_time

    async def _list_ids(self, batch: list[str]) -> tuple[list[Any], float | None] | None:
        """One list request for ``batch``; ``None`` when there is nothing more to do with its answer now.

        A transient failure is logged (checked again later); a permanent error goes to every waiter of the
        batch; an answer saying the list endpoint is unusable sets :attr:`rejected`.
        """
        sink = self.sink
        resource = self.resource
        try:
            return await resource.list_batch(self.client, sink.enterprise_id, batch)
        except OESError as exc:
            if is_transient(exc):
                log.warning(
                    "Could not check %d %s of enterprise %r this time, will try again: %s",
                    len(batch),
                    resource.plural,
                    sink.enterprise_id,
                    exc,
                )
            elif exc.status_code in LIST_UNUSABLE_STATUS_CODES:
                if self.rejected is None:
                    self.rejected = exc
                    log.warning(
                        "OES poller %r/%r: the list endpoint rejected a check by ids (%s); checking with one GET "
                        "per %s from now on.",
                        sink.key[0],
                        sink.enterprise_id,
                        exc,
                        resource.name,
                    )
            else:
                for record_id in batch:
                    sink.finish(record_id, resource.error_event(exc, record_id))
            return None

    def _apply_records(self, batch: list[str], records: list[Any]) -> set[str]:
        """Hand the sink the records of ``batch`` found in ``records``; return the ids settled by them.

        A record that ends a wait but is not complete enough for an event (a listed settlement without its
        transfers) is left out of the result: the single GET reads it in full.
        """
        sink = self.sink
        resource = self.resource
        wanted = {record_id.lower(): record_id for record_id in batch}
        seen: set[str] = set()
        for position, raw in enumerate(records):
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            asked = wanted.get(raw_id.lower()) if isinstance(raw_id, str) else None
            if asked is None:
                continue  # not one we asked for (or no usable id): the single GET settles ours
            try:
                record = resource.parse(raw, record_id=asked, enterprise_id=sink.enterprise_id, position=position)
            except OESError as exc:
                seen.add(asked)
                sink.finish(asked, resource.error_event(exc, asked))
                continue
            if not resource.is_complete(record) and sink.ends_a_wait(asked, record):
                continue
            seen.add(asked)
            sink.observe(asked, record)
        return seen
