"""Benchmark: 1, 2 or 3 real poller processes sharing one BitGo token under BitGo's limit (360 per 60 s).

Each process runs deferred ``AllocationStatusTrigger``s (one shared poller, one GET per allocation per
second: far more than the limit allows) with the token's whole limit as its static limit, against one
local simulator that enforces the limit per token across every client (429 + ``Retry-After``). While they
run, one allocation per process flips every ``--flip-every`` seconds; at the end every other allocation
clears and each process must report every flip.

Prints, per configuration: requests per minute the token sent (overall and after convergence), the 429s it
cost and when the last one came (convergence), the most requests the simulator received in any 60 s
window after convergence (must be <= 360), and whether every flip was seen; then the same configuration
on the virtual-clock model (``tests/harness/shared_token.py``) for comparison.

    python bench/bench_shared_token.py --processes 3 --duration 300    # the issue's five-minute run
    python bench/bench_shared_token.py --processes 1 2 --duration 180
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of the measured phase")
    parser.add_argument("--limit", type=int, default=360)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--allocations", type=int, default=50, help="allocations each process waits for")
    parser.add_argument("--flip-every", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from airflow_provider_oes.testing.simulator import OESSimulator
    from tests.harness.shared_token import run_processes, simulate

    results = []
    for processes in args.processes:
        started = time.monotonic()
        with OESSimulator(port=0, rate_limit=(args.limit, args.window)) as sim:
            run = run_processes(
                sim, processes, args.allocations, steady_seconds=args.duration, flip_every=args.flip_every
            )
        figures = run.figures
        minutes = (figures.end - figures.start) / 60
        model = simulate(processes, args.limit, args.window, args.duration).figures
        row = {
            "processes": processes,
            "duration_s": round(figures.end - figures.start, 1),
            "requests_per_min": round(len(figures.requests) / minutes, 1),
            "requests_per_min_after_convergence": round(figures.per_window_after_convergence() * 60 / args.window, 1),
            "throttled_before_convergence": len(figures.throttled),
            "throttled_whole_run": run.throttled_total,
            "converged_after_s": round(figures.converged_at, 1),
            "max_in_any_window_after_convergence": figures.max_in_any_window_after_convergence(),
            "limit": args.limit,
            "flips": len(run.expected),
            "flips_missed": len(run.missed),
            "duplicate_events": len(run.duplicates),
            "limiters": run.limiters,
            "model": {
                "requests_per_min_after_convergence": round(model.per_window_after_convergence() * 60 / args.window, 1),
                "throttled": len(model.throttled),
                "converged_after_s": round(model.converged_at, 1),
                "max_in_any_window_after_convergence": model.max_in_any_window_after_convergence(),
            },
            "wall_s": round(time.monotonic() - started, 1),
        }
        results.append(row)
        print(
            f"{processes} process(es), {row['duration_s']:.0f} s: {row['requests_per_min']:.0f} requests/min per token "
            f"({row['requests_per_min_after_convergence']:.0f} after convergence); "
            f"{row['throttled_before_convergence']} x 429, last at {row['converged_after_s']:.1f} s "
            f"({row['throttled_whole_run']} over the whole run); max {row['max_in_any_window_after_convergence']} "
            f"in any {args.window:g} s window after it (limit {args.limit}); flips seen "
            f"{row['flips'] - row['flips_missed']}/{row['flips']}, duplicates {row['duplicate_events']}",
            flush=True,
        )
        print(f"    limiters at the end: {run.limiters}", flush=True)
        print(f"    virtual-clock model: {row['model']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = all(
        r["max_in_any_window_after_convergence"] <= r["limit"] and r["flips_missed"] == 0 and r["duplicate_events"] == 0
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
