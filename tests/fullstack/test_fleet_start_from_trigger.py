"""A mapped fleet of 200 deferrable sensors started from the triggerer, on the real scheduler and triggerer.

Two DAGs over 200 allocations each, written to a DAG folder of this module's own (the ids must be literal
lists: Airflow 3.3.2 starts every map index from the same trigger arguments and the triggerer picks each
index's id from the list):

* ``oes_fleet_sft``: ``AllocationStatusSensor.partial(start_from_trigger=True).expand(allocation_id=[...])``;
* ``oes_fleet_worker``: the same with ``deferrable=True`` only (each sensor first runs on a worker).

Checked: with ``start_from_trigger`` no worker runs before the allocations are final (the simulator sees no
single GET, which is what a worker's first check sends, and every sensor is on its first try); at steady
state the simulator sees at most 2 requests per poll interval; every sensor ends right (cleared: success
with the allocation as XCom; released: failed). Printed for the closing note: the time from triggering the
run until every sensor is deferred, with and without ``start_from_trigger``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from tests.harness.fullstack import FullStack, requests_per_interval

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.fullstack

FLEET = 200
INTERVAL = 5.0
SFT_DAG = "oes_fleet_sft"
WORKER_DAG = "oes_fleet_worker"
LIST_SUFFIX = "/clients/allocations"

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oes.sensors.allocation import AllocationStatusSensor

with DAG("{sft}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=512):
    AllocationStatusSensor.partial(
        task_id="wait", start_from_trigger=True, poke_interval={interval}, timeout=1800, retries=0
    ).expand(allocation_id={sft_ids!r})

with DAG("{worker}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=512):
    AllocationStatusSensor.partial(
        task_id="wait", deferrable=True, poke_interval={interval}, timeout=1800, retries=0
    ).expand(allocation_id={worker_ids!r})
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FullStack, OESSimulator, list[str], list[str]]]:
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        sft_ids = [sim.add_allocation(final_status="reserved") for _ in range(FLEET)]
        worker_ids = [sim.add_allocation(final_status="reserved") for _ in range(FLEET)]
        dags: Path = tmp_path_factory.mktemp("fleet_dags")
        (dags / "fleet.py").write_text(
            DAG_FILE.format(sft=SFT_DAG, worker=WORKER_DAG, interval=INTERVAL, sft_ids=sft_ids, worker_ids=worker_ids)
        )
        connection = json.dumps(
            {
                "conn_type": "oes",
                "host": sim.url,
                "password": sim.token,
                "extra": {"enterprise_id": sim.enterprise_id, "poll_strategy": "feed", "batch_size": 200},
            }
        )
        env = {
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "512",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
            "AIRFLOW__TRIGGERER__CAPACITY": "1000",
            # The REST API answers at most this many task instances per page (100 by default): see all 200.
            "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
        }
        with FullStack(connection, dags_folder=dags, env=env) as stack:
            stack.start(dag_ids=(SFT_DAG, WORKER_DAG), timeout=300)
            yield stack, sim, sft_ids, worker_ids


def _all_deferred(states: dict[str, object]) -> bool:
    return len(states) == FLEET and all(getattr(s, "state", None) == "deferred" for s in states.values())


def test_fleet_started_from_the_trigger(fleet: tuple[FullStack, OESSimulator, list[str], list[str]]) -> None:
    stack, sim, sft_ids, worker_ids = fleet
    figures: dict[str, float] = {}

    # --- with start_from_trigger: no worker before the allocations are final
    sim.reset_counts()
    started = time.monotonic()
    run_id = stack.trigger(SFT_DAG, {})
    stack.wait_states(SFT_DAG, run_id, _all_deferred, "every sensor deferred", timeout=600)
    figures["sft_all_deferred_s"] = time.monotonic() - started
    # Steady state: 6 intervals after the poller's first checks by id.
    time.sleep(2 * INTERVAL)
    window_start = time.monotonic()
    time.sleep(6 * INTERVAL)
    window_end = time.monotonic()
    requests = sim.requests
    list_times = [r[3] for r in requests if r[1].endswith(LIST_SUFFIX)]
    figures["sft_requests_per_interval"] = requests_per_interval(list_times, window_start, window_end, INTERVAL)
    assert [r for r in requests if not r[1].endswith(LIST_SUFFIX)] == []  # no worker's first GET
    assert figures["sft_requests_per_interval"] <= 2.0
    states = stack.task_states(SFT_DAG, run_id)
    assert {s.state for s in states.values()} == {"deferred"}
    assert {s.try_number for s in states.values()} <= {0, 1}  # nothing ran and retried on a worker

    cleared, released = sft_ids[: FLEET - 10], sft_ids[FLEET - 10 :]
    for allocation_id in cleared:
        sim.set_status(allocation_id, "cleared")
    for allocation_id in released:
        sim.set_status(allocation_id, "released")
    assert stack.wait_run(SFT_DAG, run_id, timeout=600) == "failed"  # the 10 released fail their sensors
    states = stack.task_states(SFT_DAG, run_id)
    by_index = {s.map_index: s.state for s in states.values()}
    assert [by_index[i] for i in range(FLEET)] == ["success"] * (FLEET - 10) + ["failed"] * 10
    assert stack.xcom(SFT_DAG, run_id, "wait", map_index=3)["id"] == sft_ids[3]

    # --- without start_from_trigger (deferrable only): each sensor first runs on a worker
    sim.reset_counts()
    started = time.monotonic()
    run_id = stack.trigger(WORKER_DAG, {})
    stack.wait_states(WORKER_DAG, run_id, _all_deferred, "every sensor deferred", timeout=1200)
    figures["worker_all_deferred_s"] = time.monotonic() - started
    figures["worker_single_gets"] = sum(1 for r in sim.requests if not r[1].endswith(LIST_SUFFIX))
    assert figures["worker_single_gets"] >= FLEET  # each worker's first check
    for allocation_id in worker_ids:
        sim.set_status(allocation_id, "cleared")
    assert stack.wait_run(WORKER_DAG, run_id, timeout=900) == "success"

    print(f"\nfleet of {FLEET}: {json.dumps(figures)}")
