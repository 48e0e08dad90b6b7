"""Benchmark: a mapped fleet of deferrable sensors on the real Airflow stack, with and without ``start_from_trigger``.

Two DAGs over ``--fleet`` allocations each, on the full-stack harness (PostgreSQL, api-server, scheduler,
dag-processor, one triggerer, LocalExecutor; ``tests/harness/fullstack.py``) against one local simulator:

* ``oes_fleet_sft``: ``AllocationStatusSensor.partial(start_from_trigger=True).expand(...)``: each sensor
  starts in the triggerer, no worker runs before its allocation is final;
* ``oes_fleet_worker``: the same with ``deferrable=True`` only: each sensor first runs on a worker, checks
  once with a GET, then defers.

Prints, for each: seconds from triggering the run until every sensor is deferred, the single GETs the
simulator saw on the way (a worker's first check each) and the seconds until the run ended once every
allocation cleared; then the ratio without / with. The test ``tests/fullstack/test_fleet_start_from_trigger.py``
checks the ``start_from_trigger`` half's behaviour in CI; the slow half measured here (200 worker runs on
2 cores take minutes) is what ``start_from_trigger`` saves.

    python bench/bench_fleet_start_from_trigger.py                # 200 sensors each
    python bench/bench_fleet_start_from_trigger.py --fleet 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fullstack._fleet import (
    LIST_SUFFIX,
    SFT_DAG,
    WORKER_DAG,
    all_deferred,
    fleet_connection,
    fleet_dag_file,
    fleet_env,
)

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.fullstack import FullStack


def _measure(stack: FullStack, sim: OESSimulator, dag_id: str, ids: list[str], fleet: int) -> dict[str, float]:
    """Trigger ``dag_id``; time until all its sensors are deferred; clear every allocation; wait for the end."""
    sim.reset_counts()
    started = time.monotonic()
    run_id = stack.trigger(dag_id, {})
    stack.wait_states(dag_id, run_id, lambda states: all_deferred(states, fleet), "every sensor deferred", timeout=1800)
    deferred_s = time.monotonic() - started
    single_gets = sum(1 for r in sim.requests if not r[1].endswith(LIST_SUFFIX))
    for allocation_id in ids:
        sim.set_status(allocation_id, "cleared")
    flipped = time.monotonic()
    state = stack.wait_run(dag_id, run_id, timeout=1800)
    if state != "success":
        counts: dict[str, int] = {}
        for ti in stack.task_states(dag_id, run_id).values():
            counts[str(ti.state)] = counts.get(str(ti.state), 0) + 1
        raise SystemExit(f"{dag_id}: the run ended {state!r}, expected 'success'; task states {counts}")
    return {
        "all_deferred_s": deferred_s,
        "single_gets": single_gets,
        "run_end_after_flip_s": time.monotonic() - flipped,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", type=int, default=200, help="mapped sensors per DAG")
    parser.add_argument("--interval", type=float, default=5.0, help="the sensors' poke_interval")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.fullstack import FullStack

    with OESSimulator(port=0) as sim, tempfile.TemporaryDirectory(prefix="oes-bench-fleet-") as tmp:
        sft_ids = [sim.add_allocation(final_status="reserved") for _ in range(args.fleet)]
        worker_ids = [sim.add_allocation(final_status="reserved") for _ in range(args.fleet)]
        dags = Path(tmp)
        (dags / "fleet.py").write_text(fleet_dag_file(args.interval, sft_ids, worker_ids))
        with FullStack(fleet_connection(sim), dags_folder=dags, env=fleet_env()) as stack:
            stack.start(dag_ids=(SFT_DAG, WORKER_DAG), timeout=600)
            figures = {
                "fleet": args.fleet,
                "with_start_from_trigger": _measure(stack, sim, SFT_DAG, sft_ids, args.fleet),
                "deferrable_only": _measure(stack, sim, WORKER_DAG, worker_ids, args.fleet),
            }
    with_sft, without = figures["with_start_from_trigger"], figures["deferrable_only"]
    print(f"fleet of {args.fleet} mapped sensors, poke_interval {args.interval} s")
    print(f"{'':28}{'all deferred (s)':>18}{'single GETs':>14}{'run end after flip (s)':>24}")
    for name, row in (("start_from_trigger=True", with_sft), ("deferrable=True only", without)):
        print(f"{name:28}{row['all_deferred_s']:>18.1f}{row['single_gets']:>14}{row['run_end_after_flip_s']:>24.1f}")
    ratio = without["all_deferred_s"] / max(with_sft["all_deferred_s"], 1e-9)
    print(f"time to all deferred, without / with start_from_trigger: {ratio:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
