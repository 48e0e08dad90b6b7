"""A mapped fleet of 200 deferrable sensors started from the triggerer, on the real scheduler and triggerer.

``oes_fleet_sft``: ``AllocationStatusSensor.partial(start_from_trigger=True).expand(allocation_id=[...])``
over 200 allocations (the DAG, connection and settings are in ``tests/fullstack/_fleet.py``).

Checked: with ``start_from_trigger`` no worker runs before the allocations are final (the simulator sees no
single GET, which is what a worker's first check sends, and every sensor is on its first try); at steady
state the simulator sees at most 2 requests per poll interval; every sensor ends right (cleared: success
with the allocation as XCom; released: failed). Printed for the closing note: the time from triggering the
run until every sensor is deferred. The same fleet without ``start_from_trigger`` (each sensor first runs
on a worker: minutes on 2 cores) is measured by ``bench/bench_fleet_start_from_trigger.py``, not in CI.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from tests.fullstack._fleet import (
    LIST_SUFFIX,
    SFT_DAG,
    TIMEOUT_DAG,
    all_deferred,
    fleet_connection,
    fleet_dag_file,
    fleet_env,
    timeout_dag_file,
)
from tests.harness.fullstack import FullStack, requests_per_interval

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.fullstack

FLEET = 200
INTERVAL = 5.0
TIMEOUT_FLEET = 3
SENSOR_TIMEOUT = 30


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FullStack, OESSimulator, list[str]]]:
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        sft_ids = [sim.add_allocation(final_status="reserved") for _ in range(FLEET)]
        never_final = [sim.add_allocation(final_status="reserved") for _ in range(TIMEOUT_FLEET)]
        dags: Path = tmp_path_factory.mktemp("fleet_dags")
        (dags / "fleet.py").write_text(fleet_dag_file(INTERVAL, sft_ids))
        (dags / "fleet_timeout.py").write_text(timeout_dag_file(INTERVAL, SENSOR_TIMEOUT, never_final))
        with FullStack(fleet_connection(sim), dags_folder=dags, env=fleet_env()) as stack:
            stack.start(dag_ids=(SFT_DAG, TIMEOUT_DAG), timeout=300)
            yield stack, sim, sft_ids


def test_fleet_started_from_the_trigger(fleet: tuple[FullStack, OESSimulator, list[str]]) -> None:
    stack, sim, sft_ids = fleet
    figures: dict[str, float] = {}

    sim.reset_counts()
    started = time.monotonic()
    run_id = stack.trigger(SFT_DAG, {})
    stack.wait_states(SFT_DAG, run_id, lambda s: all_deferred(s, FLEET), "every sensor deferred", timeout=600)
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

    print(f"\nfleet of {FLEET}: {json.dumps(figures)}")


def test_mapped_fleet_times_out(fleet: tuple[FullStack, OESSimulator, list[str]]) -> None:
    """The sensor's ``timeout`` holds for a mapped ``start_from_trigger`` fleet whose allocations never become
    final: the scheduler times the triggers out and the sensors fail (no ``execution_timeout`` set)."""
    stack = fleet[0]
    started = time.monotonic()
    run_id = stack.trigger(TIMEOUT_DAG, {})
    stack.wait_states(TIMEOUT_DAG, run_id, lambda s: all_deferred(s, TIMEOUT_FLEET), "fleet deferred", timeout=300)
    # Before the fix the triggers had no timeout: the run stayed deferred for good.
    assert stack.wait_run(TIMEOUT_DAG, run_id, timeout=SENSOR_TIMEOUT + 240) == "failed"
    elapsed = time.monotonic() - started
    states = stack.task_states(TIMEOUT_DAG, run_id)
    assert sorted(s.map_index for s in states.values()) == list(range(TIMEOUT_FLEET))
    assert {s.state for s in states.values()} == {"failed"}
    assert elapsed >= SENSOR_TIMEOUT
    first = next(s for s in states.values() if s.map_index == 0)
    assert "AirflowSensorTimeout" in stack.task_log(TIMEOUT_DAG, run_id, "wait", first.try_number, map_index=0)
    print(f"\nmapped fleet with timeout={SENSOR_TIMEOUT}s failed after {elapsed:.0f} s")
