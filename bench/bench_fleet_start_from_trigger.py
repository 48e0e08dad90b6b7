"""Benchmark: a mapped fleet of deferrable sensors on the real Airflow stack, in three modes, then the fast one at 1,000.

DAGs over ``--fleet`` allocations each, on the full-stack harness (PostgreSQL, api-server, scheduler,
dag-processor, one triggerer, LocalExecutor; ``tests/harness/fullstack.py``) against one local simulator
(DAGs in ``tests/fullstack/_fleet.py``):

* ``oes_fleet_worker``: ``deferrable=True``: each sensor first runs on a worker (one GET), defers, and
  resumes on a worker once its allocation is final;
* ``oes_fleet_sft``: ``start_from_trigger=True``: each sensor starts in the triggerer, resumes on a worker;
* ``oes_fleet_end``: ``start_from_trigger=True, end_from_trigger=True``: no worker at all for a cleared one;
* then ``oes_fleet_end`` again over ``--large`` allocations (1,000 by default: the largest fleet Airflow maps
  by default, ``[core] max_map_length`` 1,024).

Figures for each: seconds from triggering the run until every sensor is deferred; seconds from the last
flip to ``cleared`` until the run ended; task processes workers started for the sensors (counted by an
``on_execute_callback``, which runs in every worker task process and never in the triggerer); requests the
simulator saw per poll interval at steady state. The machine's load (``os.getloadavg()``) is printed with
them: the runs share 2 cores with whatever else is running.

    python bench/bench_fleet_start_from_trigger.py                # 200 sensors per mode, then 1,000
    python bench/bench_fleet_start_from_trigger.py --fleet 50 --large 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fullstack._fleet import (
    END_DAG,
    MODES,
    SFT_DAG,
    WORKER_DAG,
    WORKER_RUNS_ENV,
    all_deferred,
    fleet_connection,
    fleet_env,
    fleets_dag_file,
    worker_runs,
)
from tests.harness.fullstack import requests_per_interval

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.fullstack import FullStack

LABELS = {
    WORKER_DAG: "deferrable (worker start + resume)",
    SFT_DAG: "start_from_trigger (worker resume)",
    END_DAG: "start_ + end_from_trigger",
}
LARGE_DAG = "oes_fleet_end_large"


def _measure(
    stack: FullStack, sim: OESSimulator, dag_id: str, ids: list[str], interval: float, runs: Path
) -> dict[str, Any]:
    """Trigger ``dag_id``; time until all its sensors are deferred; count requests at steady state; clear
    every allocation; time from the last flip to the run's end; count the workers' task processes."""
    load_before = os.getloadavg()
    sim.reset_counts()
    started = time.monotonic()
    run_id = stack.trigger(dag_id, {})
    fleet = len(ids)
    stack.wait_states(dag_id, run_id, lambda states: all_deferred(states, fleet), "every sensor deferred", timeout=3600)
    deferred_s = time.monotonic() - started
    time.sleep(2 * interval)  # past the poller's first checks by id
    window_start = time.monotonic()
    time.sleep(4 * interval)
    window_end = time.monotonic()
    per_interval = requests_per_interval([r[3] for r in sim.requests], window_start, window_end, interval)
    for allocation_id in ids:
        sim.set_status(allocation_id, "cleared")
    flipped = time.monotonic()
    state = stack.wait_run(dag_id, run_id, timeout=3600)
    end_after_flip_s = time.monotonic() - flipped
    if state != "success":
        counts: dict[str, int] = {}
        failed = []
        for ti in stack.task_states(dag_id, run_id).values():
            counts[str(ti.state)] = counts.get(str(ti.state), 0) + 1
            if ti.state == "failed":
                failed.append(ti)
        detail = ""
        if failed:
            first = failed[0]
            log = stack.task_log(dag_id, run_id, first.task_id, max(first.try_number, 1), first.map_index)
            detail = f"\n--- log of {first.key} (try {first.try_number}) ---\n{log[-4000:]}"
        raise SystemExit(f"{dag_id}: the run ended {state!r}, expected 'success'; task states {counts}{detail}")
    return {
        "fleet": fleet,
        "all_deferred_s": round(deferred_s, 1),
        "run_end_after_flip_s": round(end_after_flip_s, 1),
        "worker_task_processes": worker_runs(runs, dag_id),
        "requests_per_interval": round(per_interval, 2),
        "load_1m_before": round(load_before[0], 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", type=int, default=200, help="mapped sensors per DAG in the three-mode comparison")
    parser.add_argument("--large", type=int, default=1000, help="sensors of the last run, both flags (0: skip)")
    parser.add_argument("--interval", type=float, default=5.0, help="the sensors' poke_interval")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.fullstack import FullStack

    modes = (WORKER_DAG, SFT_DAG, END_DAG)
    with OESSimulator(port=0) as sim, tempfile.TemporaryDirectory(prefix="oes-bench-fleet-") as tmp:
        ids = {dag_id: [sim.add_allocation(final_status="reserved") for _ in range(args.fleet)] for dag_id in modes}
        large_ids = [sim.add_allocation(final_status="reserved") for _ in range(args.large)]
        dags = Path(tmp) / "dags"
        dags.mkdir()
        fleets = {**ids, LARGE_DAG: large_ids} if args.large else ids
        (dags / "fleet.py").write_text(fleets_dag_file(args.interval, fleets, {**MODES, LARGE_DAG: MODES[END_DAG]}))
        runs = Path(tmp) / "worker_runs.txt"
        env = {
            **fleet_env(),
            WORKER_RUNS_ENV: str(runs),
            "AIRFLOW__TRIGGERER__CAPACITY": str(max(1000, args.large + 100)),
        }
        dag_ids = (*modes, LARGE_DAG) if args.large else modes
        with FullStack(fleet_connection(sim), dags_folder=dags, env=env) as stack:
            stack.start(dag_ids=dag_ids, timeout=600)
            figures: dict[str, Any] = {"interval_s": args.interval, "cpus": os.cpu_count()}
            for dag_id in modes:
                figures[dag_id] = _measure(stack, sim, dag_id, ids[dag_id], args.interval, runs)
            if args.large:
                figures[LARGE_DAG] = _measure(stack, sim, LARGE_DAG, large_ids, args.interval, runs)

    print(f"poke_interval {args.interval} s; {figures['cpus']} CPUs; 1-min load average before / after each run")
    header = (
        f"{'mode':38}{'sensors':>8}{'all deferred (s)':>18}{'last flip -> run end (s)':>26}"
        f"{'worker task procs':>19}{'requests/interval':>19}{'load':>13}"
    )
    print(header)
    rows = [(LABELS[d], figures[d]) for d in modes]
    if args.large:
        rows.append((LABELS[END_DAG], figures[LARGE_DAG]))
    for label, row in rows:
        print(
            f"{label:38}{row['fleet']:>8}{row['all_deferred_s']:>18.1f}{row['run_end_after_flip_s']:>26.1f}"
            f"{row['worker_task_processes']:>19}{row['requests_per_interval']:>19.2f}"
            f"{row['load_1m_before']:>7.2f}/{row['load_1m_after']:<5.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
