"""What the deferrable sensors share: the first check on a worker, then the hand-over to their trigger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context


class DeferringSensor(BaseSensorOperator):
    """A sensor that, with ``deferrable``, checks once on its worker and hands the rest of the wait to its trigger.

    Subclasses set ``deferrable`` and ``end_from_trigger`` and implement ``_defer_to_trigger`` (which calls
    ``self.defer``) and ``execute_complete``.
    """

    deferrable: bool
    end_from_trigger: bool

    def execute(self, context: Context) -> Any:
        """Check once; in deferrable mode hand the wait to the triggerer if not final."""
        if not self.deferrable:
            self._checks_starting()
            return super().execute(context)
        try:
            first = self.poke(context)
        except AirflowFailException as exc:
            # BaseSensorOperator.execute turns a final failure into a skip under soft_fail/never_fail;
            # this first check bypasses it, so apply the same rule here (final failure + soft_fail = skip).
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping due to soft_fail/never_fail: {exc}") from exc
            raise
        if isinstance(first, PokeReturnValue) and first.is_done:
            return first.xcom_value
        if first is True:
            return None
        self._defer_to_trigger()
        return None

    def _checks_starting(self) -> None:
        """Called before the checks of poke and reschedule mode start (in this run)."""

    def _defer_to_trigger(self) -> None:
        raise NotImplementedError

    def _may_end_in_triggerer(self) -> bool:
        """``end_from_trigger``, unless this task's success needs a worker (outlets, ...): then it resumes."""
        from airflow_provider_oes.triggers._task_end import worker_needed

        if not self.end_from_trigger:
            return False
        reason = worker_needed(self)
        if reason is not None:
            self.log.info("end_from_trigger: task %s will resume on a worker: %s", self.task_id, reason)
        return reason is None
