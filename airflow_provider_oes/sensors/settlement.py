"""Sensor that holds back downstream tasks until a BitGo OES settlement is final."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._task import AllocationTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oes.settlement_models import SettlementDetails


class SettlementStatusSensor(AllocationTaskMixin, BaseSensorOperator):
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

    Works in ``mode="poke"`` and ``mode="reschedule"``. Deferrable mode is not available yet.

    :param settlement_id: UUID of the settlement to wait for. Templated.
    :param enterprise_id: The client's BitGo enterprise id; ``None`` uses the connection's ``enterprise_id``
        extra. Templated.
    :param oes_conn_id: Airflow connection id of type ``oes``; default ``oes_default``. Templated.
    :param fail_on_failed: Fail the task as soon as the settlement is ``failed`` instead of waiting for BitGo's
        retry to complete or reject it.
    :param deferrable: Must be ``False``: passing ``True`` raises ``ValueError`` (not supported yet). Airflow's
        ``[operators] default_deferrable`` is not read, so turning it on does not break DAGs using this sensor.
    """

    template_fields = ("settlement_id", "enterprise_id", "oes_conn_id")

    def __init__(
        self,
        *,
        settlement_id: str,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        fail_on_failed: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        if deferrable:
            raise ValueError(
                "SettlementStatusSensor does not support deferrable=True yet; use mode='reschedule' to free the "
                "worker slot between checks"
            )
        super().__init__(**kwargs)
        self.settlement_id = settlement_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self.fail_on_failed = fail_on_failed
        self.deferrable = False

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
        """The status rules, in one place (poke and reschedule modes; the deferrable mode will resume here).

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
