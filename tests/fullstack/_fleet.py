"""The mapped-fleet DAG, connection and settings shared by the fleet test and ``bench/bench_fleet_start_from_trigger.py``.

The ids must be literal lists in the DAG file: Airflow 3.3.2 starts every map index from the same trigger
arguments and the triggerer picks each index's id from the list.

Every sensor has an ``on_execute_callback`` that appends a line to ``$OES_WORKER_RUNS_FILE`` (when set): it
runs in each task process a worker starts for it (first run and each resume alike) and never in the
triggerer, so the file counts worker processes exactly (:func:`worker_runs`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

SFT_DAG = "oes_fleet_sft"
WORKER_DAG = "oes_fleet_worker"
TIMEOUT_DAG = "oes_fleet_sft_timeout"
END_DAG = "oes_fleet_end"
MODES = {
    WORKER_DAG: "deferrable=True",
    SFT_DAG: "start_from_trigger=True",
    END_DAG: "start_from_trigger=True, end_from_trigger=True",
}
"""The sensor arguments of each fleet DAG: worker start and resume; worker resume; no worker."""
WORKER_RUNS_ENV = "OES_WORKER_RUNS_FILE"
LIST_SUFFIX = "/clients/allocations"

_HEADER = """
import os
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor


def count_worker_run(context):
    path = os.environ.get({env!r})
    if path:
        ti = context["ti"]
        with open(path, "a") as runs:
            runs.write(f"{{ti.dag_id}} {{ti.task_id}} {{ti.map_index}}\\n")
"""

_FLEET_DAG = """
with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=1100):
    AllocationStatusSensor.partial(
        task_id="wait", {mode}, poke_interval={interval}, timeout=1800, retries=0,
        on_execute_callback=count_worker_run,
    ).expand(allocation_id={ids!r})
"""


def fleet_dag_file(interval: float, sft_ids: list[str], worker_ids: list[str] | None = None) -> str:
    """The DAG file: ``oes_fleet_sft`` (``start_from_trigger=True``) over ``sft_ids`` and, when given,
    ``oes_fleet_worker`` (``deferrable=True`` only: each sensor first runs on a worker) over ``worker_ids``."""
    fleets = {SFT_DAG: sft_ids} if worker_ids is None else {SFT_DAG: sft_ids, WORKER_DAG: worker_ids}
    return fleets_dag_file(interval, fleets)


def fleets_dag_file(interval: float, fleets: Mapping[str, list[str]], modes: Mapping[str, str] = MODES) -> str:
    """The DAG file of one mapped fleet per DAG id, each over its ids, with the sensor arguments ``modes`` gives
    that DAG id (:data:`MODES` by default)."""
    text = _HEADER.format(env=WORKER_RUNS_ENV)
    for dag_id, ids in fleets.items():
        text += _FLEET_DAG.format(dag_id=dag_id, mode=modes[dag_id], interval=interval, ids=ids)
    return text


_TIMEOUT_DAG = """
with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    AllocationStatusSensor.partial(
        task_id="wait", start_from_trigger=True, poke_interval={interval}, timeout={timeout}, retries=0
    ).expand(allocation_id={ids!r})
"""


def timeout_dag_file(interval: float, timeout: float, ids: list[str]) -> str:
    """``oes_fleet_sft_timeout``: a mapped ``start_from_trigger`` fleet with a short sensor ``timeout``."""
    return _HEADER.format(env=WORKER_RUNS_ENV) + _TIMEOUT_DAG.format(
        dag_id=TIMEOUT_DAG, interval=interval, timeout=timeout, ids=ids
    )


def worker_runs(path: Path, dag_id: str) -> int:
    """Task processes workers started for ``dag_id``'s sensors (``task_id`` ``wait*``), from the runs file."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    return sum(1 for line in lines if line.split(" ")[:1] == [dag_id] and line.split(" ")[1].startswith("wait"))


def fleet_connection(sim: OESSimulator) -> str:
    """The ``oes_default`` connection (JSON) of the fleet: the change feed, 200 ids per id batch."""
    return json.dumps(
        {
            "conn_type": "oes",
            "host": sim.url,
            "password": sim.token,
            "extra": {"enterprise_id": sim.enterprise_id, "poll_strategy": "feed", "batch_size": 200},
        }
    )


def fleet_env() -> dict[str, str]:
    """Airflow settings for hundreds of sensors of one run in one triggerer."""
    return {
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1100",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
        "AIRFLOW__TRIGGERER__CAPACITY": "1000",
        # The REST API answers at most this many task instances per page (100 by default): see them all.
        "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
    }


def all_deferred(states: Mapping[str, object], fleet: int) -> bool:
    """Whether all ``fleet`` task instances of a run are deferred."""
    return len(states) == fleet and all(getattr(s, "state", None) == "deferred" for s in states.values())


NO_WORKER_POOL = "oes_no_workers"
"""A pool with 0 slots: a task that needs a worker can never run in it."""
POOLED_DAG = "oes_end_pooled"
FALLBACK_DAG = "oes_end_fallbacks"
OUTLET_URI = "oes://end-from-trigger/cleared"

_END_DAGS = """
with DAG({pooled!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=512):
    waits = AllocationStatusSensor.partial(
        task_id="wait", start_from_trigger=True, end_from_trigger=True, pool={pool!r},
        poke_interval={interval}, timeout=1800, retries=2, on_execute_callback=count_worker_run,
    ).expand(allocation_id={ids!r})

    @task(pool="default_pool")
    def collect(allocations):
        return sorted(allocation["id"] for allocation in allocations)

    collect(waits.output)

with DAG({fallbacks!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    AllocationStatusSensor(
        task_id="wait_released", allocation_id={released!r}, start_from_trigger=True, end_from_trigger=True,
        poke_interval={interval}, timeout=1800, retries=3, retry_delay=1, on_execute_callback=count_worker_run,
    )
    AllocationStatusSensor(
        task_id="wait_outlets", allocation_id={outlet!r}, start_from_trigger=True, end_from_trigger=True,
        poke_interval={interval}, timeout=1800, retries=0, outlets=[Asset({outlet_uri!r})],
        on_execute_callback=count_worker_run,
    )
"""


def end_from_trigger_dag_file(interval: float, fleet_ids: list[str], released_id: str, outlet_id: str) -> str:
    """``oes_end_pooled``: a fleet with both flags in the 0-slot pool, and ``collect`` (default pool) reading its
    XComs; ``oes_end_fallbacks``: a sensor whose allocation is released (``retries=3``) and one with outlets,
    both with both flags, in the default pool (each resumes on a worker)."""
    return _HEADER.format(env=WORKER_RUNS_ENV) + _END_DAGS.format(
        pooled=POOLED_DAG,
        fallbacks=FALLBACK_DAG,
        pool=NO_WORKER_POOL,
        interval=interval,
        ids=fleet_ids,
        released=released_id,
        outlet=outlet_id,
        outlet_uri=OUTLET_URI,
    )
