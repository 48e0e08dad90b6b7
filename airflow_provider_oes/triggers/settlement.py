"""Trigger that waits, in the triggerer, until an OES settlement is ``completed`` or ``rejected``.

Triggers do not poll on their own: each registers its settlement with the shared poller of the settlements of
its connection and enterprise in this event loop (:mod:`airflow_provider_oes.triggers._polling`, the allocations'
poller with the settlement resource), over the connection's shared HTTP client and rate limiter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oes._constants import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DEFAULT_POLL_INTERVAL = 60.0
"""Seconds between checks when the trigger was given none."""


class SettlementStatusTrigger(BaseTrigger):
    """Fire once when the settlement is final (or ``failed``, with ``fail_on_failed``), or on a permanent error.

    Events (:mod:`airflow_provider_oes.triggers._settlement_events`): a ``settled`` event with the settlement,
    its transfers and disputes once it is ``completed`` or ``rejected`` (or ``failed`` when ``fail_on_failed``);
    an ``error`` event for a permanent error (HTTP 400/401/403/404, an invalid answer, a bad connection or id).
    ``pending``, ``failed`` (by default: BitGo retries it) and unknown statuses keep it waiting; transient
    errors left after the connection's retries are logged and polling goes on (the sensor's ``timeout``
    bounds the wait).

    :param settlement_id: UUID of the settlement.
    :param enterprise_id: The client's enterprise id; empty: the connection's ``enterprise_id`` extra.
    :param oes_conn_id: Airflow connection id of type ``oes``.
    :param poll_interval: Seconds between checks; triggers sharing a poller are checked at the smallest one.
    :param fail_on_failed: Fire on ``failed`` too (the sensor then fails fast).
    :param end_from_trigger: On ``completed``, end the task here (push the settlement as its ``return_value``
        XCom, then a ``TaskSuccessEvent``); every other outcome resumes on a worker.
    """

    def __init__(
        self,
        settlement_id: str,
        enterprise_id: str | None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        fail_on_failed: bool = False,
        end_from_trigger: bool = False,
    ) -> None:
        super().__init__()
        self.settlement_id = settlement_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.poll_interval = poll_interval
        self.fail_on_failed = fail_on_failed
        self.end_from_trigger = end_from_trigger

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(settlement_id={self.settlement_id!r}, enterprise_id={self.enterprise_id!r}, "
            f"oes_conn_id={self.oes_conn_id!r}, poll_interval={self.poll_interval!r}, "
            f"fail_on_failed={self.fail_on_failed!r}, end_from_trigger={self.end_from_trigger!r})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-data kwargs, to rebuild the trigger in the triggerer."""
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "settlement_id": self.settlement_id,
            "enterprise_id": self.enterprise_id,
            "oes_conn_id": self.oes_conn_id,
            "poll_interval": self.poll_interval,
            "fail_on_failed": self.fail_on_failed,
            "end_from_trigger": self.end_from_trigger,
        }

    def _checked_poll_interval(self) -> float:
        from airflow_provider_oes.exceptions import OESInvalidRequestError

        value = self.poll_interval
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise OESInvalidRequestError(f"poll_interval must be a positive number of seconds, got {value!r}")
        return float(value)

    def _may_end_task(self) -> bool:
        """Whether a ``completed`` settlement ends the task here rather than on a worker."""
        from airflow_provider_oes.triggers._task_end import worker_needed

        if not self.end_from_trigger:
            return False
        if self.task_instance is None:
            # dag.test() runs the trigger in process with no task instance: no XCom can be pushed from here.
            self.log.info("end_from_trigger: no task instance here; settlement %s resumes the task", self.settlement_id)
            return False
        task = getattr(self.task_instance, "task", None)
        reason = worker_needed(task) if task is not None else None
        if reason is not None:
            self.log.info("end_from_trigger: settlement %s resumes on a worker: %s", self.settlement_id, reason)
        return reason is None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait on the shared settlement poller; yield exactly one event."""
        from airflow_provider_oes._api import validate_enterprise_id
        from airflow_provider_oes._settlement_api import validate_settlement_id
        from airflow_provider_oes.exceptions import OESError
        from airflow_provider_oes.triggers._events import error_event
        from airflow_provider_oes.triggers._polling import register
        from airflow_provider_oes.triggers._polling.settlements import SETTLEMENTS

        try:
            settlement_id = validate_settlement_id(self.settlement_id)
            enterprise_id = self.enterprise_id
            if not enterprise_id:  # started from the triggerer without one: the connection's, as the sensor does
                from airflow_provider_oes.triggers._shared import connections

                enterprise_id = (await connections.shared(self.oes_conn_id)).settings.enterprise_id
            enterprise_id = validate_enterprise_id(enterprise_id)
            waiter = await register(
                self.oes_conn_id,
                enterprise_id,
                settlement_id,
                self._checked_poll_interval(),
                resource=SETTLEMENTS,
                fail_fast=bool(self.fail_on_failed),
            )
        except OESError as exc:
            yield TriggerEvent(error_event(exc))
            return
        try:
            event = await waiter.wait()
        finally:
            waiter.cancel()  # on an event and on cancellation alike: leave the shared poller
        if self._may_end_task():
            task_end = self._end_task(event, settlement_id, enterprise_id)
            if task_end is not None:
                yield task_end
                return
        yield TriggerEvent(event)

    def _end_task(self, event: dict[str, Any], settlement_id: str, enterprise_id: str) -> TriggerEvent | None:
        """The ``TaskSuccessEvent`` for a ``completed`` settlement, read as ``execute_complete`` reads it; else ``None``."""
        from airflow_provider_oes.exceptions import OESError
        from airflow_provider_oes.triggers._settlement_events import read_settlement_event
        from airflow_provider_oes.triggers._task_end import end_task_with

        try:
            details = read_settlement_event(
                event, settlement_id=settlement_id, enterprise_id=enterprise_id, fail_on_failed=self.fail_on_failed
            )
        except OESError:
            return None  # the worker raises the same error, where the sensor's rules (soft_fail, retries) apply
        if not details.settlement.is_completed:
            return None
        return end_task_with(
            details.to_json_dict(),
            what=f"settlement {settlement_id} completed",
            task_instance=self.task_instance,
            log=self.log,
        )
