"""What the deferrable sensors share: the first check on a worker, then the hand-over to their trigger."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

# The Airflow checks the sensors ask, looked up here at each call (tests replace them on this module).
from airflow_provider_oes._task import airflow_ends_tasks_from_triggers, airflow_renders_start_trigger_templates

if TYPE_CHECKING:
    from airflow.sdk import Context


class DeferringSensor(BaseSensorOperator):
    """A sensor that, with ``deferrable``, checks once on its worker and hands the rest of the wait to its trigger.

    Subclasses call :meth:`_set_trigger_options` in ``__init__``, name their trigger in ``_trigger_cls`` and
    implement ``_start_trigger_kwargs``, ``_defer_to_trigger`` (which calls ``self.defer``) and
    ``execute_complete``.
    """

    _trigger_cls: ClassVar[str]
    """The import path of the sensor's trigger, as ``start_from_trigger`` names it to the scheduler."""
    deferrable: bool
    end_from_trigger: bool

    def _set_trigger_options(self, *, deferrable: bool, start_from_trigger: bool, end_from_trigger: bool) -> None:
        """The one rule for ``deferrable``, ``start_from_trigger`` and ``end_from_trigger`` (after the subclass
        has set what :meth:`_start_trigger_kwargs` reads).

        ``start_from_trigger`` implies ``deferrable``, and before Airflow 3.3 falls back to deferring from a
        worker. ``end_from_trigger`` takes effect only for a sensor that waits in the triggerer, on an Airflow
        whose triggers can end their task; otherwise it is turned off (``False``, as Airflow's DAG checks read
        it) with a warning at DAG parse, and the sensor behaves exactly as without it.
        """
        # Starting from the triggerer is deferring without the first check on a worker: whenever the task
        # does run on a worker (Airflow 3.2, a retry), it defers as well.
        self.deferrable = deferrable or start_from_trigger
        self.end_from_trigger = False
        if end_from_trigger and not self.deferrable:
            self.log.warning(
                "end_from_trigger has no effect on task %s: it waits in the triggerer only with deferrable=True "
                "or start_from_trigger=True.",
                self.task_id,
            )
        elif end_from_trigger and not airflow_ends_tasks_from_triggers():
            self.log.warning(
                "end_from_trigger needs an Airflow whose triggers can end their task (TaskSuccessEvent); task %s "
                "resumes on a worker instead.",
                self.task_id,
            )
        else:
            self.end_from_trigger = end_from_trigger
        self.start_from_trigger = False
        if not start_from_trigger:
            return
        if not airflow_renders_start_trigger_templates():
            self.log.warning(
                "start_from_trigger needs Airflow 3.3 or later (the triggerer renders templated trigger "
                "arguments from 3.3); task %s defers from a worker instead.",
                self.task_id,
            )
            return
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=self._trigger_cls,
            # Raw values: the triggerer renders the templated ones with this task instance's context.
            trigger_kwargs=self._start_trigger_kwargs(),
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def _start_trigger_kwargs(self) -> dict[str, Any]:
        """The trigger's arguments when the scheduler starts the task in the triggerer (``start_from_trigger``)."""
        raise NotImplementedError

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
