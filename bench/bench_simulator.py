"""The OES simulator at change-feed scale: bulk creation and list queries over 100,000 allocations.

Figures (one run, same machine):

* bulk creation of N waiting allocations, in-process (``OESSimulator.add_allocations``) and through the
  control API of a child process (``OESSimulatorClient.add_allocations``); baseline: N / 10 single
  ``add_allocation`` calls, scaled to N;
* one feed page (``statuses=cleared,released&sortField=updatedAt&sortDirection=DESC``) over N rows of which
  F are final, at page sizes 100 and 1000, first and deep pages; baseline: the same order asked without
  ``statuses`` (no index: every row filtered and sorted), so the ratio shows what the index saves;
* one id batch of 200 (``allocationIds=...``), as the id-batch poller asks;
* resident memory of the child simulator after creation.

Run: ``python bench/bench_simulator.py [--count 100000] [--final 20000] [--repeat 20]``
"""

from __future__ import annotations

import argparse
import statistics
import time


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--final", type=int, default=20_000, help="how many of them are flipped to final")
    parser.add_argument("--repeat", type=int, default=20, help="requests per query figure (median shown)")
    args = parser.parse_args()

    import psutil
    import requests

    from airflow_provider_oes.testing.simulator import OESSimulator, OESSimulatorProcess

    with OESSimulator(rate_limit=None) as sim:
        start = time.perf_counter()
        sim.add_allocations(args.count)
        bulk_in_process = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.count // 10):
            sim.add_allocation(final_status="reserved")
        singles = (time.perf_counter() - start) * 10

    with OESSimulatorProcess(rate_limit=None) as proc:
        start = time.perf_counter()
        ids = proc.client.add_allocations(args.count)
        bulk_http = time.perf_counter() - start
        proc.client.schedule_flips(ids[: args.final], status=("cleared", "released"), rate=args.final / 2)
        while proc.client.pending_flips:
            time.sleep(0.2)
        rss = psutil.Process(proc.pid).memory_info().rss
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {proc.token}"
        base = f"{proc.url}/api/network/v1/enterprises/{proc.enterprise_id}/clients/allocations"

        def median(params: dict[str, object]) -> float:
            session.get(base, params=params, timeout=120).raise_for_status()  # warm
            runs = []
            for _ in range(args.repeat):
                begin = time.perf_counter()
                response = session.get(base, params=params, timeout=120)
                runs.append(time.perf_counter() - begin)
                response.raise_for_status()
            return statistics.median(runs)

        feed = {"statuses": "cleared,released", "sortField": "updatedAt", "sortDirection": "DESC"}
        unindexed = {"sortField": "updatedAt", "sortDirection": "DESC"}
        figures = {
            "feed page 0, size 100": median({**feed, "pageSize": 100}),
            "feed page 0, size 1000": median({**feed, "pageSize": 1000}),
            "feed page 19, size 1000": median({**feed, "pageSize": 1000, "pageNumber": 19}),
            "no index: page 0, size 100": median({**unindexed, "pageSize": 100}),
            "id batch of 200": median({"allocationIds": ",".join(ids[-200:]), "pageSize": 200}),
        }

    print(f"allocations: {args.count:,}, of them final: {args.final:,}; median of {args.repeat} requests")
    print(f"bulk add, in process             : {bulk_in_process:8.2f} s  ({args.count / bulk_in_process:,.0f} / s)")
    print(f"bulk add, through the control API: {bulk_http:8.2f} s")
    print(
        f"single add_allocation calls      : {singles:8.2f} s  (scaled; bulk is {singles / bulk_in_process:.1f}x faster)"
    )
    for label, seconds in figures.items():
        print(f"{label:33}: {_ms(seconds)}")
    ratio = figures["no index: page 0, size 100"] / figures["feed page 0, size 100"]
    print(f"feed page vs the same order without the index: {ratio:.0f}x faster")
    print(f"simulator process RSS            : {rss / 2**20:8.0f} MB")


if __name__ == "__main__":
    main()
