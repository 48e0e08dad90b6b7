"""Sensor that holds back downstream tasks until a BitGo OES settlement is final."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue, conf

from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._task import AllocationTaskMixin
from airflow_provider_oes.sensors._deferring import DeferringSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oes.settlement_models import SettlementDetails


class SettlementStatusSensor(AllocationTaskMixin, DeferringSensor):
    """Wait until a BitGo OES client settlement is final.

    * ``pending``: keep waiting (a v2 settlement stays so through the dispute and top-up windows).
    * ``completed``: succeed; the settlement with all its transfers and disputes, in the API's JSON shape
      (``{"settlement", "settlementTransfers", "settlingDisputes", "settlementDisputes"}``, amounts exact as
      strings), is the task's XCom return value.
    * ``rejected``: fail at once with :class:`~airflow_provider_oes.exceptions.SettlementRejectedError` (no
      retries: the state is final; ``soft_fail=True`` skips instead), naming BitGo's reason.
    * ``failed``: BitGo calls it **not final** (it retries the settlement): a warning with BitGo's reason, and
      keep waiting until ``timeout``. With ``fail_on_failed=True``, fail at once instead
      (:class:`~airflow_provider_oes.exceptions.SettlementFailedError`, no retries; ``soft_fail`` skips).
    * a status this package does not know: never success; a warning, and keep waiting until ``timeout``.
    * permanent API errors (400/401/403/404, an invalid answer): fail at once with what to fix; transient ones
      left after the connection's retries (5xx, 429, timeouts): a warning, and keep waiting.

    Works in ``mode="poke"``, ``mode="reschedule"`` and with ``deferrable=True``: the wait moves to the
    triggerer, where one settlement poller per connection and enterprise asks about every waiting settlement
    in id batches, over the HTTP client and rate limiter the allocation triggers of that connection use.

    :param settlement_id: UUID of the settlement to wait for. Templated.
    :param enterprise_id: The client's BitGo enterprise id; ``None`` uses the connection's ``enterprise_id``
        extra. Templated.
    :param oes_conn_id: Airflow connection id of type ``oes``; default ``oes_default``. Templated.
    :param fail_on_failed: Fail the task as soon as the settlement is ``failed`` instead of waiting for BitGo's
        retry to complete or reject it.
    :param deferrable: Wait in the triggerer instead of a worker slot (after a first check on the worker).
        Defaults to Airflow's ``[operators] default_deferrable``, as for ``AllocationStatusSensor``.
    :param start_from_trigger: Airflow 3.3+: go from the scheduler straight to the triggerer, with no worker
        and no first check (implies ``deferrable``). On 3.2 the sensor defers from a worker instead. Not for
        mapped sensors (``expand``): those defer from a worker.
    :param end_from_trigger: With ``deferrable`` or ``start_from_trigger``: on ``completed`` the trigger ends
        the task in the triggerer, pushing the same XCom; every other outcome, and a task whose success needs
        a worker (outlets, ``do_xcom_push=False``, ...), resumes on a worker. Without ``deferrable`` or
        ``start_from_trigger`` (or on an Airflow whose triggers cannot end their task) it cannot take effect:
        it is turned off (the sensor's ``end_from_trigger`` reads ``False``) with a warning at DAG parse.
    """

    template_fields = ("settlement_id", "enterprise_id", "oes_conn_id")
    _trigger_cls = "airflow_provider_oes.triggers.settlement.SettlementStatusTrigger"

    def __init__(
        self,
        *,
        settlement_id: str,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        fail_on_failed: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        start_from_trigger: bool = False,
        end_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settlement_id = settlement_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.fail_on_failed = fail_on_failed
        self._set_trigger_options(
            deferrable=deferrable, start_from_trigger=start_from_trigger, end_from_trigger=end_from_trigger
        )

    def _start_trigger_kwargs(self) -> dict[str, Any]:
        return self._trigger_kwargs(self.settlement_id, self.enterprise_id or "", self.oes_conn_id)

    def _trigger_kwargs(self, settlement_id: str, enterprise_id: str, oes_conn_id: str) -> dict[str, Any]:
        return {
            "settlement_id": settlement_id,
            "enterprise_id": enterprise_id,
            "oes_conn_id": oes_conn_id,
            "poll_interval": float(self.poke_interval),
            "fail_on_failed": self.fail_on_failed,
            # The triggerer checks the task too (outlets, ...) before ending it.
            "end_from_trigger": self.end_from_trigger,
        }

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the settlement once and apply the status rules."""
        from airflow_provider_oes._retry import is_transient
        from airflow_provider_oes.exceptions import OESError

        try:
            details = self.hook.get_settlement(self.settlement_id, self.enterprise_id)
        except OESError as exc:
            if not is_transient(exc):
                raise
            self.log.warning("Could not check settlement %s this time, will try again: %s", self.settlement_id, exc)
            return PokeReturnValue(is_done=False)
        return self.evaluate(details)

    def evaluate(self, details: SettlementDetails) -> PokeReturnValue:
        """The status rules, in one place for poke, reschedule and deferrable modes.

        :raises SettlementRejectedError: when the settlement is ``rejected``.
        :raises SettlementFailedError: when it is ``failed`` and ``fail_on_failed`` is set.
        """
        from airflow_provider_oes.exceptions import SettlementFailedError, SettlementRejectedError

        settlement = details.settlement
        if settlement.is_completed:
            self.log.info(
                "Settlement completed: %s, %d transfer(s)", settlement.describe(), len(details.settlement_transfers)
            )
            return PokeReturnValue(is_done=True, xcom_value=details.to_json_dict())
        if settlement.is_rejected:
            raise SettlementRejectedError(settlement)
        if settlement.is_failed:
            if self.fail_on_failed:
                raise SettlementFailedError(settlement)
            self.log.warning(
                "Settlement %s failed (reason given by BitGo: %s). BitGo retries failed settlements, so it is not "
                "final: waiting until it is completed or rejected (or the sensor times out). Set fail_on_failed=True "
                "to fail at once instead.",
                settlement.id,
                settlement.reason or "none given",
            )
        elif not settlement.has_known_status:
            self.log.warning(
                "Settlement %s has status %r, which this provider does not know; it is not treated as completed. "
                "Waiting until it is completed or rejected (or the sensor times out).",
                settlement.id,
                settlement.status,
            )
        else:
            open_disputes = sum(1 for dispute in details.settlement_disputes if dispute.is_open)
            self.log.info("Still waiting: %s; open disputes: %d", settlement.describe(), open_disputes)
        return PokeReturnValue(is_done=False)

    def _defer_to_trigger(self) -> None:
        from airflow_provider_oes.triggers.settlement import SettlementStatusTrigger

        kwargs = self._trigger_kwargs(
            self.settlement_id, self.hook.resolve_enterprise_id(self.enterprise_id), self.oes_conn_id
        )
        kwargs["end_from_trigger"] = self._may_end_in_triggerer()
        self.defer(
            trigger=SettlementStatusTrigger(**kwargs),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: check the event, then apply exactly the same status rules as :meth:`poke`.

        :raises SettlementRejectedError: when the settlement is ``rejected``.
        :raises SettlementFailedError: when it is ``failed`` and ``fail_on_failed`` is set.
        :raises OESError: when the trigger reported a permanent API error, or sent an event not to be trusted.
        """
        from airflow_provider_oes.triggers._settlement_events import read_settlement_event

        details = read_settlement_event(
            event,
            settlement_id=str(self.settlement_id),
            enterprise_id=self.enterprise_id,
            fail_on_failed=self.fail_on_failed,
        )
        result = self.evaluate(details)
        if not result.is_done:  # pragma: no cover - read_settlement_event only lets outcomes through
            self._defer_to_trigger()
        return result.xcom_value
