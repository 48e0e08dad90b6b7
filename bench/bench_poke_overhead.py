"""Client-side CPU cost of one sensor check (``OESHook.get_allocation``) against a bare HTTP GET.

Both loops talk to the same OES simulator running in another process on 127.0.0.1, so the server's
speed does not enter the figures: only this process's CPU time (``time.process_time``) is counted.

Baseline: ``requests.Session().get(url, headers=...)`` + ``json.loads(body)`` — the least any Python
client must do. Candidate: ``OESHook.get_allocation`` — validation of the ids, the retry wrapper,
the size-limited read, error mapping and the typed model. Target ratio: <= 1.15.

Run: ``python bench/bench_poke_overhead.py [--calls 1000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    args = parser.parse_args()

    import requests

    from airflow_provider_oes.hooks.oes import OESHook
    from airflow_provider_oes.testing.simulator import OESSimulatorProcess

    with OESSimulatorProcess(port=0, rate_limit=None) as sim:  # thousands of calls: lift BitGo's limit
        allocation_id = sim.client.add_allocation(final_status="cleared", quantity="1" * 40)
        os.environ["AIRFLOW_CONN_OES_BENCH"] = json.dumps(
            {"conn_type": "oes", "host": sim.url, "password": sim.token, "extra": {"enterprise_id": sim.enterprise_id}}
        )
        hook = OESHook(oes_conn_id="oes_bench")
        url = f"{sim.url}/api/network/v1/enterprises/{sim.enterprise_id}/clients/allocations/{allocation_id}"
        session = requests.Session()
        headers = {"Authorization": f"Bearer {sim.token}"}

        def bare() -> None:
            response = session.get(url, headers=headers, timeout=(10, 30))
            json.loads(response.content)

        def hooked() -> None:
            hook.get_allocation(allocation_id)

        for fn in (bare, hooked):  # warm up connections and caches
            for _ in range(50):
                fn()

        def cpu_per_call(fn: object) -> float:
            gc.collect()
            start = time.process_time()
            for _ in range(args.calls):
                fn()  # type: ignore[operator]
            return (time.process_time() - start) / args.calls

        bare_runs, hook_runs = [], []
        for _ in range(args.rounds):
            bare_runs.append(cpu_per_call(bare))
            hook_runs.append(cpu_per_call(hooked))

    bare_cpu = statistics.median(bare_runs)
    hook_cpu = statistics.median(hook_runs)
    ratio = hook_cpu / bare_cpu
    print(f"calls per round: {args.calls}, rounds: {args.rounds} (median shown)")
    print(f"bare requests.get + json.loads : {bare_cpu * 1e6:8.1f} us CPU per call")
    print(f"OESHook.get_allocation         : {hook_cpu * 1e6:8.1f} us CPU per call")
    print(f"ratio hook / bare              : {ratio:8.3f}   (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
