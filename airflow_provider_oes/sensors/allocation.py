"""Sensor that holds back downstream settlement tasks until an OES allocation is final."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.triggers.base import StartTriggerArgs

from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._task import AllocationTaskMixin
from airflow_provider_oes.sensors import _deferring
from airflow_provider_oes.sensors._deferring import DeferringSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_oes.models import Allocation


_TRIGGER_CLS = "airflow_provider_oes.triggers.allocation.AllocationStatusTrigger"


def _from_mapped_task(name: str, default: str) -> str:
    """A template the triggerer renders to this map index's value of ``name`` (a literal ``expand`` list),
    else the ``partial`` value, else ``default``.

    Airflow 3.3.2's scheduler starts every map index of a mapped task from the same trigger kwargs (it does
    not expand them per index), and the triggerer then renders the trigger's templated fields with each task
    instance's own context: ``ti.map_index`` picks the index's value.
    """
    return (
        f"{{{{ task.expand_input.value[{name!r}][ti.map_index] if {name!r} in task.expand_input.value "
        f"else task.partial_kwargs.get({name!r}) or {default!r} }}}}"
    )


def _sensor_timeout(partial_kwargs: dict[str, Any]) -> timedelta:
    """The ``timeout`` a mapped sensor's task instances get: ``partial(timeout=...)``, else the DAG's
    ``default_args``, else Airflow's ``[sensors] default_timeout`` (as ``BaseSensorOperator`` does)."""
    timeout = partial_kwargs.get("timeout")
    dag = partial_kwargs.get("dag")
    if timeout is None and dag is not None:
        timeout = (dag.default_args or {}).get("timeout")
    if timeout is None:
        timeout = conf.getfloat("sensors", "default_timeout")
    return BaseSensorOperator._coerce_timeout(timeout)


@functools.cache
def _timed_partial_class() -> type:
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    class TimedPartial(OperatorPartial):
        """``partial()`` of a mapped ``start_from_trigger`` sensor: the mapped task's trigger gets ``timeout``."""

        def _expand(self, expand_input: Any, *, strict: bool) -> Any:
            if "timeout" in getattr(expand_input, "value", {}):
                self._expand_called = True
                raise ValueError(
                    f"task {self.kwargs.get('task_id')!r}: with start_from_trigger=True the sensor's timeout "
                    "must be given to partial(), not expanded (Airflow starts every map index from one "
                    "trigger timeout)"
                )
            mapped = super()._expand(expand_input, strict=strict)
            if mapped.start_trigger_args is not None:
                mapped.start_trigger_args = replace(mapped.start_trigger_args, timeout=_sensor_timeout(self.kwargs))
            return mapped

    return TimedPartial


class AllocationStatusSensor(AllocationTaskMixin, DeferringSensor):
    """Wait until a BitGo OES client allocation (or deallocation) is final.

    * ``reserved``: keep waiting (the API's reason is logged).
    * ``cleared``: succeed; the allocation, in the API's JSON shape, is the task's XCom return value.
    * ``released``: fail at once with :class:`~airflow_provider_oes.exceptions.AllocationReleasedError`
      (no retries: the state is final; ``soft_fail=True`` skips instead), naming the API's reason.
    * a status this package does not know: never success; a warning, and keep waiting until ``timeout``.
    * permanent API errors: fail at once with what to fix; 400/403/404 without retries, 401 and an invalid
      answer with Airflow's retries (each try reads the connection again).
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
    :param start_from_trigger: Airflow 3.3+: go from the scheduler straight to the triggerer, with no worker
        process and no GET before the wait; the first check happens in the shared poller, batched with the
        others and within the rate limit. For big fleets (see the README). Implies ``deferrable``. On 3.2 the
        sensor defers from a worker instead. Mapped: ``.partial(start_from_trigger=True).expand(
        allocation_id=[...])`` with a literal list (Airflow 3.3.2 does not expand trigger arguments per map
        index: the triggerer picks this index's value from the list).
    :param end_from_trigger: With ``deferrable`` or ``start_from_trigger``: on ``cleared`` the trigger ends the
        task itself, with the allocation as its ``return_value`` XCom, and no worker runs. Every other outcome
        (``released``, permanent errors, ``timeout``) and a sensor with ``outlets`` still resume on a worker,
        exactly as without it; see ``docs/fleets-end-from-trigger.rst`` for the full list. Mapped:
        ``.partial(end_from_trigger=True)``. Without ``deferrable`` or ``start_from_trigger`` (or on an Airflow
        whose triggers cannot end their task) it cannot take effect: it is turned off (the sensor's
        ``end_from_trigger`` reads ``False``) with a warning at DAG parse.

    Given ``outlets=[asset, ...]``, the sensor attaches the cleared allocation (id, type, status, amount,
    connectionId, reason) to each outlet's asset event ``extra`` in every mode (``start_from_trigger`` and
    ``end_from_trigger`` included: the task resumes on a worker), so a DAG scheduled on the asset reads which
    allocation started it (:func:`~airflow_provider_oes.assets.allocations_from_asset_event`).
    """

    # Used as they are for mapped sensors (``.partial(start_from_trigger=True).expand(allocation_id=[...])``),
    # whose __init__ does not run before the scheduler starts them; an unmapped sensor replaces it with its own
    # values in __init__. None before Airflow 3.3: there the scheduler would hand the triggerer unrendered
    # templates, so the sensor always starts on a worker.
    start_trigger_args: StartTriggerArgs | None = (
        StartTriggerArgs(
            trigger_cls=_TRIGGER_CLS,
            trigger_kwargs={
                "allocation_id": _from_mapped_task("allocation_id", ""),
                "enterprise_id": _from_mapped_task("enterprise_id", ""),
                "oes_conn_id": _from_mapped_task("oes_conn_id", DEFAULT_CONN_ID),
                "poll_interval": None,
                # The triggerer reads it from the task's partial (and checks the task: outlets...).
                "end_from_trigger": None,
            },
            next_method="execute_complete",
            next_kwargs=None,
            timeout=None,
        )
        if _deferring.airflow_renders_start_trigger_templates()
        else None
    )
    start_from_trigger = False
    _trigger_cls = _TRIGGER_CLS

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """As :meth:`BaseOperator.partial`; with ``start_from_trigger=True`` the mapped sensor's ``timeout``
        also bounds its start in the triggerer.

        A mapped task's ``__init__`` does not run before the scheduler starts it from the triggerer: Airflow
        takes the trigger's timeout only from the class's ``start_trigger_args``, which knows no ``timeout``,
        so without this a mapped fleet would wait forever.
        """
        base = super().partial(**kwargs)
        if not (base.kwargs.get("start_from_trigger") and cls.start_trigger_args is not None):
            return base
        base._expand_called = True  # replaced by the partial below, which does the expanding
        return _timed_partial_class()(operator_class=base.operator_class, kwargs=base.kwargs, params=base.params)

    def __init__(
        self,
        *,
        allocation_id: str,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        start_from_trigger: bool = False,
        end_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id
        self._set_trigger_options(
            deferrable=deferrable, start_from_trigger=start_from_trigger, end_from_trigger=end_from_trigger
        )

    def _start_trigger_kwargs(self) -> dict[str, Any]:
        # No last check: the shared poller checks the allocation by id first, in a batch with the others,
        # within the rate limit.
        return {
            "allocation_id": self.allocation_id,
            "enterprise_id": self.enterprise_id or "",
            "oes_conn_id": self.oes_conn_id,
            "poll_interval": float(self.poke_interval),
            # The triggerer checks the task too (outlets, ...) before ending it.
            "end_from_trigger": self.end_from_trigger,
        }

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
        result = self.evaluate(allocation)
        if result.is_done:
            self._attach_to_outlets(context, allocation, self.enterprise_id)
        return result

    def _attach_to_outlets(self, context: Context, allocation: Allocation, enterprise_id: str | None) -> None:
        """On success, put the allocation on each outlet's asset event (for DAGs scheduled on those assets)."""
        from airflow_provider_oes.assets import attach_allocation_to_outlets

        if not self.outlets:
            return
        resolved = enterprise_id or self.hook.resolve_enterprise_id(self.enterprise_id)
        attach_allocation_to_outlets(self, context, allocation, enterprise_id=resolved, oes_conn_id=self.oes_conn_id)

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

    def _checks_starting(self) -> None:
        # This run's first check is about to happen (for the wait-time metric; see _record_wait_time).
        self._first_check_monotonic = time.monotonic()

    def _defer_to_trigger(self) -> None:
        from airflow_provider_oes._time import format_timestamp
        from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

        # The API server's time of the check that just saw the allocation not final: the triggerer's change
        # feed covers every change after it (no time of our own clock: it may differ from the server's).
        checked = self.hook.last_server_time
        self.defer(
            trigger=AllocationStatusTrigger(
                allocation_id=self.allocation_id,
                enterprise_id=self.hook.resolve_enterprise_id(self.enterprise_id),
                oes_conn_id=self.oes_conn_id,
                poll_interval=float(self.poke_interval),
                last_check=format_timestamp(checked) if checked is not None else None,
                end_from_trigger=self._may_end_in_triggerer(),
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
        result = self.evaluate(allocation)
        if result.is_done:
            # Outlet events are registered when the task succeeds on a worker, i.e. here, not in the trigger.
            self._attach_to_outlets(context, allocation, None)
        return result.xcom_value
