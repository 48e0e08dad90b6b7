"""Sensor that holds back downstream settlement tasks until an OES allocation is final."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._task import AllocationTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oes.models import Allocation


class AllocationStatusSensor(AllocationTaskMixin, BaseSensorOperator):
    """Wait until a BitGo OES client allocation (or deallocation) is final.

    * ``reserved``: keep waiting (the API's reason is logged).
    * ``cleared``: succeed; the allocation, in the API's JSON shape, is the task's XCom return value.
    * ``released``: fail at once with :class:`~airflow_provider_oes.exceptions.AllocationReleasedError`
      (no retries: the state is final; ``soft_fail=True`` skips instead), naming the API's reason.
    * a status this package does not know: never success; a warning, and keep waiting until ``timeout``.
    * permanent API errors (400/401/403/404, an invalid answer): fail at once with what to fix.
    * transient API errors left after the connection's retries (5xx, 429, timeouts): a warning, and keep
      waiting until ``timeout``.

    Works in ``mode="poke"``, ``mode="reschedule"`` and with ``deferrable=True`` (the wait moves to the
    triggerer, where many sensors share one batched poller per connection and enterprise).

    :param allocation_id: UUID of the allocation to wait for. Templated.
    :param enterprise_id: The client's BitGo enterprise id; ``None`` uses the connection's
        ``enterprise_id`` extra. Templated.
    :param oes_conn_id: Airflow connection id of type ``oes``; default ``oes_default``. Templated.
    :param deferrable: Wait in the triggerer instead of a worker slot. Defaults to Airflow's
        ``[operators] default_deferrable``.
    """

    def __init__(
        self,
        *,
        allocation_id: str,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.deferrable = deferrable

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the allocation once and apply the status rules."""
        from airflow_provider_oes._retry import is_transient
        from airflow_provider_oes.exceptions import OESError

        try:
            allocation = self.hook.get_allocation(self.allocation_id, self.enterprise_id)
        except OESError as exc:
            if not is_transient(exc):
                raise
            self.log.warning("Could not check allocation %s this time, will try again: %s", self.allocation_id, exc)
            return PokeReturnValue(is_done=False)
        if allocation.is_terminal:
            self._record_wait_time(context, allocation)
        return self.evaluate(allocation)

    def _record_wait_time(self, context: Context, allocation: Allocation) -> None:
        """Send the time from the first check to the final status (poke and reschedule mode only)."""
        from airflow_provider_oes import _metrics

        started = self.__dict__.get("_first_check_monotonic")
        if started is None or not _metrics.enabled():
            return  # not inside execute() in poke/reschedule mode (deferrable, or a bare poke())
        seconds = time.monotonic() - started
        try:
            if self.reschedule:
                # Each reschedule is a fresh run of this method: the first check happened in an earlier run.
                # Airflow keeps when that run started (what it measures the sensor's timeout from); None
                # while this is the first run.
                first = context["ti"].get_first_reschedule_date(context)
                if first is not None:
                    seconds = (datetime.now(timezone.utc) - first).total_seconds()
            tags = _metrics.tags_for(self.oes_conn_id, self.hook.resolve_enterprise_id(self.enterprise_id))
        except Exception:
            # A metric must never fail the sensor: without the first date there is nothing true to send.
            self.log.debug("No wait-time metric: the first check time is unknown", exc_info=True)
            return
        _metrics.sensor_wait(seconds, str(allocation.status), self.mode, tags)

    def evaluate(self, allocation: Allocation) -> PokeReturnValue:
        """The status rules, in one place for poke, reschedule and deferrable modes.

        :raises AllocationReleasedError: when the allocation is ``released``.
        """
        from airflow_provider_oes.exceptions import AllocationReleasedError

        if allocation.is_cleared:
            self.log.info("Allocation cleared: %s", allocation.describe())
            return PokeReturnValue(is_done=True, xcom_value=allocation.to_json_dict())
        if allocation.is_released:
            raise AllocationReleasedError(allocation)
        if not allocation.has_known_status:
            self.log.warning(
                "Allocation %s has status %r, which this provider does not know; it is not treated as "
                "cleared. Waiting until it is cleared or released (or the sensor times out).",
                allocation.id,
                allocation.status,
            )
        else:
            self.log.info("Still waiting: %s", allocation.describe())
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        """Check once; in deferrable mode hand the wait to the triggerer if the allocation is not final."""
        if not self.deferrable:
            # This run's first check is about to happen (for the wait-time metric; see _record_wait_time).
            self._first_check_monotonic = time.monotonic()
            return super().execute(context)
        try:
            first = self.poke(context)
        except AirflowFailException as exc:
            # BaseSensorOperator.execute turns a final failure into a skip under soft_fail/never_fail;
            # this first check bypasses it, so apply the same rule here (released + soft_fail = skip).
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping due to soft_fail/never_fail: {exc}") from exc
            raise
        if first.is_done:
            return first.xcom_value
        self._defer_to_trigger()
        return None

    def _defer_to_trigger(self) -> None:
        from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

        self.defer(
            trigger=AllocationStatusTrigger(
                allocation_id=self.allocation_id,
                enterprise_id=self.hook.resolve_enterprise_id(self.enterprise_id),
                oes_conn_id=self.oes_conn_id,
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: check the event, then apply exactly the same status rules as :meth:`poke`.

        :raises AllocationReleasedError: when the allocation is ``released``.
        :raises OESError: when the trigger reported a permanent API error.
        """
        from airflow_provider_oes.triggers._events import read_event

        allocation = read_event(event, allocation_id=str(self.allocation_id), enterprise_id=self.enterprise_id)
        return self.evaluate(allocation).xcom_value
