"""``start_from_trigger`` + ``end_from_trigger`` on the real scheduler and triggerer: a fleet that never needs a worker.

``oes_end_pooled``: ``AllocationStatusSensor.partial(start_from_trigger=True, end_from_trigger=True, pool=...)``
over 50 allocations in a pool with **0 slots** (a task that needs a worker can never run there), and
``collect`` in the default pool reading every sensor's XCom. ``oes_end_fallbacks``, beside it in the default
pool: a sensor whose allocation is released (``retries=3``) and one with outlets; each resumes on a worker.
(DAGs in ``tests/fullstack/_fleet.py``.)

Checked: the pooled fleet succeeds, each sensor with its own allocation (the simulator's JSON record) as XCom,
with no task process on a worker (counted by an ``on_execute_callback``), and ``collect`` reads all of them;
the released sensor fails on its first try with BitGo's reason despite ``retries``; the sensor with outlets
produces its asset event with the allocation in its ``extra``. Printed for the closing note: time until all
deferred, and from the last flip to the run's end.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from tests.fullstack._fleet import (
    FALLBACK_DAG,
    NO_WORKER_POOL,
    OUTLET_URI,
    POOLED_DAG,
    WORKER_RUNS_ENV,
    all_deferred,
    end_from_trigger_dag_file,
    fleet_connection,
    fleet_env,
    worker_runs,
)
from tests.fullstack._support import metadata_rows
from tests.harness.fullstack import FullStack

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.fullstack, pytest.mark.slow]

FLEET = 50
INTERVAL = 3.0
REASON = "partner rejected the allocation"


class _Setup:
    def __init__(self, stack: FullStack, sim: OESSimulator, runs: Path, ids: list[str], released: str, outlet: str):
        self.stack, self.sim, self.runs = stack, sim, runs
        self.ids, self.released, self.outlet = ids, released, outlet


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Setup]:
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        ids = [sim.add_allocation(final_status="reserved", quantity=str(1000 + i)) for i in range(FLEET)]
        released = sim.add_allocation(final_status="reserved")
        outlet = sim.add_allocation(final_status="reserved")
        dags: Path = tmp_path_factory.mktemp("end_dags")
        (dags / "end_fleet.py").write_text(end_from_trigger_dag_file(INTERVAL, ids, released, outlet))
        runs = tmp_path_factory.mktemp("end_runs") / "worker_runs.txt"
        env = {**fleet_env(), WORKER_RUNS_ENV: str(runs)}
        with FullStack(fleet_connection(sim), dags_folder=dags, env=env) as stack:
            stack.start(dag_ids=(POOLED_DAG, FALLBACK_DAG), timeout=300)
            stack.api_json("POST", "/api/v2/pools", {"name": NO_WORKER_POOL, "slots": 0}, expect=201)
            yield _Setup(stack, sim, runs, ids, released, outlet)


def _errors(stack: FullStack) -> str:
    """Error lines of the triggerer and scheduler logs, for failure messages."""
    lines = [
        f"{name}: {line}"
        for name in ("triggerer", "scheduler")
        for line in stack.component_log(name).splitlines()
        if "error" in line.lower() or "Traceback" in line
    ]
    return "\n".join(lines[-40:])


def test_fleet_in_a_zero_slot_pool_ends_in_the_triggerer(setup: _Setup) -> None:
    stack, sim = setup.stack, setup.sim
    started = time.monotonic()
    run_id = stack.trigger(POOLED_DAG, {})
    sensors_deferred = lambda states: all_deferred({k: v for k, v in states.items() if k != "collect"}, FLEET)  # noqa: E731
    stack.wait_states(POOLED_DAG, run_id, sensors_deferred, "every sensor deferred", timeout=300)
    all_deferred_s = time.monotonic() - started

    for allocation_id in setup.ids:
        sim.set_status(allocation_id, "cleared")
    flipped = time.monotonic()
    assert stack.wait_run(POOLED_DAG, run_id, timeout=300) == "success", (
        f"{stack.describe(POOLED_DAG, run_id)}\n{_errors(stack)}"
    )
    end_after_flip_s = time.monotonic() - flipped

    states = stack.task_states(POOLED_DAG, run_id)
    assert {s.state for s in states.values()} == {"success"}
    assert len(states) == FLEET + 1
    assert worker_runs(setup.runs, POOLED_DAG) == 0  # no sensor ran on a worker (the pool has no slot anyway)
    for index in (0, 17, FLEET - 1):
        assert stack.xcom(POOLED_DAG, run_id, "wait", map_index=index) == sim.get_record(setup.ids[index])
    assert stack.xcom(POOLED_DAG, run_id, "collect") == sorted(setup.ids)
    print(
        f"\nend_from_trigger fleet of {FLEET}: {json.dumps({'all_deferred_s': all_deferred_s, 'run_end_after_flip_s': end_after_flip_s})}"
    )


def test_released_fails_on_its_first_try_with_the_reason_and_outlets_get_their_event(setup: _Setup) -> None:
    stack, sim = setup.stack, setup.sim
    run_id = stack.trigger(FALLBACK_DAG, {})
    both_deferred = lambda states: len(states) == 2 and {s.state for s in states.values()} == {"deferred"}  # noqa: E731
    stack.wait_states(FALLBACK_DAG, run_id, both_deferred, "both sensors deferred", timeout=300)
    sim.set_status(setup.released, "released", reason=REASON)
    sim.set_status(setup.outlet, "cleared")
    assert stack.wait_run(FALLBACK_DAG, run_id, timeout=300) == "failed", (
        f"{stack.describe(FALLBACK_DAG, run_id)}\n{_errors(stack)}"
    )

    states = stack.task_states(FALLBACK_DAG, run_id)
    assert (states["wait_released"].state, states["wait_released"].try_number) == ("failed", 1)  # retries=3 unused
    assert REASON in stack.task_log(FALLBACK_DAG, run_id, "wait_released", try_number=1)
    assert states["wait_outlets"].state == "success"
    assert stack.xcom(FALLBACK_DAG, run_id, "wait_outlets") == sim.get_record(setup.outlet)
    # Each resumed on a worker once, and only to end: the start was in the triggerer.
    assert worker_runs(setup.runs, FALLBACK_DAG) == 2

    rows = metadata_rows(
        stack,
        "SELECT e.extra, e.source_task_id FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = :uri",
        uri=OUTLET_URI,
    )
    assert len(rows) == 1
    extra, source_task = rows[0]
    extra = json.loads(extra) if isinstance(extra, str) else extra
    assert source_task == "wait_outlets"
    assert setup.outlet in json.dumps(extra)
