"""The mapped-fleet DAG, connection and settings shared by the fleet test and ``bench/bench_fleet_start_from_trigger.py``.

The ids must be literal lists in the DAG file: Airflow 3.3.2 starts every map index from the same trigger
arguments and the triggerer picks each index's id from the list.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_oes.testing.simulator import OESSimulator

SFT_DAG = "oes_fleet_sft"
WORKER_DAG = "oes_fleet_worker"
TIMEOUT_DAG = "oes_fleet_sft_timeout"
LIST_SUFFIX = "/clients/allocations"

_HEADER = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
"""

_FLEET_DAG = """
with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=512):
    AllocationStatusSensor.partial(
        task_id="wait", {mode}, poke_interval={interval}, timeout=1800, retries=0
    ).expand(allocation_id={ids!r})
"""


def fleet_dag_file(interval: float, sft_ids: list[str], worker_ids: list[str] | None = None) -> str:
    """The DAG file: ``oes_fleet_sft`` (``start_from_trigger=True``) over ``sft_ids`` and, when given,
    ``oes_fleet_worker`` (``deferrable=True`` only: each sensor first runs on a worker) over ``worker_ids``."""
    text = _HEADER + _FLEET_DAG.format(dag_id=SFT_DAG, mode="start_from_trigger=True", interval=interval, ids=sft_ids)
    if worker_ids is not None:
        text += _FLEET_DAG.format(dag_id=WORKER_DAG, mode="deferrable=True", interval=interval, ids=worker_ids)
    return text


_TIMEOUT_DAG = """
with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    AllocationStatusSensor.partial(
        task_id="wait", start_from_trigger=True, poke_interval={interval}, timeout={timeout}, retries=0
    ).expand(allocation_id={ids!r})
"""


def timeout_dag_file(interval: float, timeout: float, ids: list[str]) -> str:
    """``oes_fleet_sft_timeout``: a mapped ``start_from_trigger`` fleet with a short sensor ``timeout``."""
    return _HEADER + _TIMEOUT_DAG.format(dag_id=TIMEOUT_DAG, interval=interval, timeout=timeout, ids=ids)


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
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "512",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
        "AIRFLOW__TRIGGERER__CAPACITY": "1000",
        # The REST API answers at most this many task instances per page (100 by default): see them all.
        "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
    }


def all_deferred(states: Mapping[str, object], fleet: int) -> bool:
    """Whether all ``fleet`` task instances of a run are deferred."""
    return len(states) == fleet and all(getattr(s, "state", None) == "deferred" for s in states.values())
