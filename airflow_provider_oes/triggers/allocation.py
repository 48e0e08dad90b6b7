"""Trigger that waits, in the triggerer, until an OES allocation is ``cleared`` or ``released``.

Triggers do not poll on their own: each registers its allocation with the poller shared by every trigger of
the same connection and enterprise in this event loop (:mod:`airflow_provider_oes.triggers._polling`), within
the connection's rate limit.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oes._constants import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DEFAULT_POLL_INTERVAL = 60.0
"""Seconds between checks when the trigger was given none (a mapped sensor started from the triggerer)."""


class AllocationStatusTrigger(BaseTrigger):
    """Fire once when the allocation is final, or when a permanent error makes waiting pointless.

    Events (their shapes, and the checks the sensor applies on arrival, are in
    :mod:`airflow_provider_oes.triggers._events`): a ``terminal`` event once the allocation is ``cleared`` or
    ``released``; an ``error`` event for a permanent error (HTTP 400/401/403/404, an invalid answer, a bad
    connection or id).

    ``reserved`` and unknown statuses keep it waiting; transient errors left after the connection's retries
    are logged as warnings and polling goes on (the sensor's ``timeout`` bounds the wait).

    :param allocation_id: UUID of the allocation.
    :param enterprise_id: The client's enterprise id (resolved from the connection by the sensor); empty: the
        connection's ``enterprise_id`` extra (a sensor started from the triggerer).
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param poll_interval: Seconds between checks; triggers sharing a poller are checked at the smallest one.
        ``None``: the ``poke_interval`` of the mapped sensor that started it, else 60.
    :param last_check: When the sensor last saw the allocation not final, in the API server's time (ISO 8601,
        from the ``Date`` of its GET). With it the shared poller's change feed covers the allocation without
        asking about it; without it (or when too old) the poller checks it by id first. Triggers serialized by
        older versions have none and keep working.
    :param end_from_trigger: On ``cleared``, end the task here (push the allocation as its ``return_value``
        XCom, then a ``TaskSuccessEvent``) instead of resuming it on a worker; every other outcome still
        resumes on a worker (:mod:`airflow_provider_oes.triggers._task_end`). ``None``: the mapped sensor's
        ``partial`` value (a mapped sensor started from the triggerer).
    """

    def __init__(
        self,
        allocation_id: str,
        enterprise_id: str | None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float | None = DEFAULT_POLL_INTERVAL,
        last_check: str | None = None,
        end_from_trigger: bool | None = False,
    ) -> None:
        super().__init__()
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.poll_interval = poll_interval
        self.last_check = last_check
        self.end_from_trigger = end_from_trigger

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(allocation_id={self.allocation_id!r}, enterprise_id={self.enterprise_id!r}, "
            f"oes_conn_id={self.oes_conn_id!r}, poll_interval={self.poll_interval!r}, last_check={self.last_check!r}, "
            f"end_from_trigger={self.end_from_trigger!r})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs, to rebuild the trigger in the triggerer."""
        kwargs: dict[str, Any] = {
            "allocation_id": self.allocation_id,
            "enterprise_id": self.enterprise_id,
            "oes_conn_id": self.oes_conn_id,
            "poll_interval": self.poll_interval,
        }
        if self.last_check is not None:  # absent rather than null: the same kwargs as before it existed
            kwargs["last_check"] = self.last_check
        if self.end_from_trigger is not False:  # likewise: absent unless asked for
            kwargs["end_from_trigger"] = self.end_from_trigger
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def _task_poke_interval(self) -> float | None:
        """A mapped sensor started from the triggerer: its ``poke_interval`` from ``partial`` (if any)."""
        task = getattr(self, "task", None)
        partial_kwargs = getattr(task, "partial_kwargs", None)
        value = partial_kwargs.get("poke_interval") if isinstance(partial_kwargs, dict) else None
        if isinstance(value, timedelta):
            return value.total_seconds()
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def _may_end_task(self) -> bool:
        """Whether a ``cleared`` allocation ends the task here rather than on a worker."""
        from airflow_provider_oes.triggers._task_end import worker_needed

        wanted = self.end_from_trigger
        # The task itself is known here only when it started from the triggerer (Airflow 3.3+); a sensor that
        # deferred from a worker checked it there before asking.
        task = getattr(self.task_instance, "task", None)
        if wanted is None:  # a mapped sensor started from the triggerer: its partial's
            partial_kwargs = getattr(task, "partial_kwargs", None)
            wanted = isinstance(partial_kwargs, dict) and partial_kwargs.get("end_from_trigger") is True
        if not wanted:
            return False
        if self.task_instance is None:
            # dag.test() runs the trigger in process with no task instance: no XCom can be pushed from here.
            self.log.info("end_from_trigger: no task instance here; allocation %s resumes the task", self.allocation_id)
            return False
        reason = worker_needed(task) if task is not None else None
        if reason is not None:
            self.log.info("end_from_trigger: allocation %s resumes on a worker: %s", self.allocation_id, reason)
        return reason is None

    def _checked_poll_interval(self) -> float:
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        value = self.poll_interval
        if value is None:  # started from the triggerer as a mapped sensor: its partial's, else the default
            value = self._task_poke_interval() or DEFAULT_POLL_INTERVAL
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise OESInvalidRequestError(f"poll_interval must be a positive number of seconds, got {value!r}")
        return float(value)

    def _checked_last_check(self) -> float | None:
        from airflow_provider_oes._time import parse_timestamp

        if self.last_check is None:
            return None
        value = parse_timestamp(self.last_check)
        if value is None:
            # Only a cost: the poller checks the allocation by id instead of trusting the feed for it.
            self.log.warning(
                "last_check %r is not an ISO 8601 time; allocation %s will be checked by id first",
                str(self.last_check)[:40],
                self.allocation_id,
            )
        return value

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait on the shared poller; yield exactly one event."""
        from airflow_provider_oes._api import validate_allocation_id, validate_enterprise_id
        from airflow_provider_oes.exceptions import OESError
        from airflow_provider_oes.triggers._events import error_event
        from airflow_provider_oes.triggers._polling import register
        from airflow_provider_oes.triggers._polling.allocations import ALLOCATIONS

        try:
            allocation_id = validate_allocation_id(self.allocation_id)
            enterprise_id = self.enterprise_id
            if not enterprise_id:  # started from the triggerer without one: the connection's, as the sensor does
                from airflow_provider_oes.triggers._shared import connections

                enterprise_id = (await connections.shared(self.oes_conn_id)).settings.enterprise_id
            enterprise_id = validate_enterprise_id(enterprise_id)
            registration = await register(
                self.oes_conn_id,
                enterprise_id,
                allocation_id,
                self._checked_poll_interval(),
                self._checked_last_check(),
                resource=ALLOCATIONS,
            )
        except OESError as exc:
            yield TriggerEvent(error_event(exc, str(self.allocation_id)))
            return
        try:
            event = await registration.wait()
        finally:
            # On an event and on cancellation alike: leave the shared poller (it stops when nobody is left).
            registration.cancel()
        if self._may_end_task():
            from airflow_provider_oes.triggers._task_end import end_task

            task_end = end_task(
                event,
                allocation_id=allocation_id,
                enterprise_id=enterprise_id,
                task_instance=self.task_instance,
                log=self.log,
            )
            if task_end is not None:
                yield task_end
                return
        yield TriggerEvent(event)
