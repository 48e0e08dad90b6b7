"""Trigger that waits, in the triggerer, until an OES allocation is ``cleared`` or ``released``.

Triggers do not poll on their own: each registers its allocation with the poller shared by every trigger of
the same connection and enterprise in this event loop (:mod:`airflow_provider_oes.triggers._poller`), which
asks BitGo about up to ``batch_size`` allocations per request, within the connection's rate limit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oes._constants import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class AllocationStatusTrigger(BaseTrigger):
    """Fire once when the allocation is final, or when a permanent error makes waiting pointless.

    Events (their shapes, and the checks the sensor applies on arrival, are in
    :mod:`airflow_provider_oes.triggers._events`): a ``terminal`` event once the allocation is ``cleared`` or
    ``released``; an ``error`` event for a permanent error (HTTP 400/401/403/404, an invalid answer, a bad
    connection or id).

    ``reserved`` and unknown statuses keep it waiting; transient errors left after the connection's retries
    are logged as warnings and polling goes on (the sensor's ``timeout`` bounds the wait).

    :param allocation_id: UUID of the allocation.
    :param enterprise_id: The client's enterprise id (already resolved from the connection by the sensor).
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param poll_interval: Seconds between checks; triggers sharing a poller are checked at the smallest one.
    """

    def __init__(
        self,
        allocation_id: str,
        enterprise_id: str,
        oes_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(allocation_id={self.allocation_id!r}, enterprise_id={self.enterprise_id!r}, "
            f"oes_conn_id={self.oes_conn_id!r}, poll_interval={self.poll_interval!r})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs, to rebuild the trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "allocation_id": self.allocation_id,
                "enterprise_id": self.enterprise_id,
                "oes_conn_id": self.oes_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    def _checked_poll_interval(self) -> float:
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        value = self.poll_interval
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise OESInvalidRequestError(f"poll_interval must be a positive number of seconds, got {value!r}")
        return float(value)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait on the shared poller; yield exactly one event."""
        from airflow_provider_oes._api import validate_allocation_id, validate_enterprise_id
        from airflow_provider_oes.exceptions import OESError
        from airflow_provider_oes.triggers._events import error_event
        from airflow_provider_oes.triggers._poller import register

        try:
            allocation_id = validate_allocation_id(self.allocation_id)
            enterprise_id = validate_enterprise_id(self.enterprise_id)
            registration = await register(self.oes_conn_id, enterprise_id, allocation_id, self._checked_poll_interval())
        except OESError as exc:
            yield TriggerEvent(error_event(exc, str(self.allocation_id)))
            return
        try:
            event = await registration.wait()
        finally:
            # On an event and on cancellation alike: leave the shared poller (it stops when nobody is left).
            registration.cancel()
        yield TriggerEvent(event)
