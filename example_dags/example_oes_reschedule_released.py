"""Example 2: reschedule mode, and what happens when an allocation is ``released``.

What it shows
-------------
* ``wait_for_allocation`` runs in ``mode="reschedule"``: between checks it gives its worker slot back,
  so a long wait costs no worker. It succeeds only on ``cleared``.
* If BitGo reports ``released`` (the funds went back: insufficient balance, or the partner rejected
  it) the sensor fails at once with ``AllocationReleasedError``, whose message carries BitGo's reason.
  The task is not retried: ``released`` is final.
* ``settle`` then never runs (``upstream_failed``), and ``report_release`` (trigger rule
  ``one_failed``) fetches the allocation with :class:`GetAllocationOperator` so the reason lands in XCom
  for whoever handles the failure.

Trigger it with ``--conf '{"allocation_id": "<uuid>"}'``; the DAG run ends ``failed`` when the allocation
was released, which is what alerting should key on.

Within BitGo's rate limit: a check every 5 s is 12 requests a minute per run, and ``max_active_runs=4``
bounds the DAG to 48 (plus one GET when ``report_release`` runs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_provider_oes.operators.allocation import GetAllocationOperator
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

with DAG(
    dag_id="oes_reschedule_released",
    description="Reschedule-mode gating with a branch that reports a released allocation.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    tags=["oes", "example"],
    params={"allocation_id": Param("00000000-0000-0000-0000-000000000000", type="string")},
) as dag:
    # [START howto_sensor_allocation_status_reschedule]
    wait = AllocationStatusSensor(
        task_id="wait_for_allocation",
        allocation_id="{{ params.allocation_id }}",
        mode="reschedule",
        # Explicit, because a deployment with `[operators] default_deferrable = True` would otherwise
        # defer this sensor to the triggerer instead of rescheduling it.
        deferrable=False,
        poke_interval=5,
        timeout=3600,
    )
    # [END howto_sensor_allocation_status_reschedule]

    @task
    def settle(allocation: dict[str, Any]) -> str:
        """Book the settlement for a cleared allocation."""
        return f"settled {allocation['amount']['quantity']} {allocation['amount']['currency']}"

    # [START howto_operator_get_allocation]
    report_release = GetAllocationOperator(
        task_id="report_release",
        allocation_id="{{ params.allocation_id }}",
        trigger_rule=TriggerRule.ONE_FAILED,
    )
    # [END howto_operator_get_allocation]

    settle(wait.output)
    wait >> report_release
