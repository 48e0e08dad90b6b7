"""Benchmark: the request cost of watching settlements beside allocations in one triggerer.

One event loop (one triggerer) against the local simulator, one connection: ``--settlements`` deferred
``SettlementStatusTrigger``s waiting on pending settlements, ``--watchers`` ``AllocationEventTrigger``s (Airflow
3.3; each with its own status filter, so their feed subscriptions differ) and, for comparison, ``--allocations``
deferred ``AllocationStatusTrigger``s on reserved allocations, and ``--settlement-watchers``
``SettlementEventTrigger``s (``pending``, then ``completed``/``rejected``). After a warm-up, counts the requests
of each route over ``--intervals`` poll intervals and prints them per interval, with the baseline of the same
run (what the allocation side alone costs). ``--busy N`` creates N settlements and completes N others in each
interval while counting (the settlement watchers' busy cost; 0: idle).

    python bench/bench_settlement_cost.py                      # 1,000 settlement sensors and 2 watchers
    python bench/bench_settlement_cost.py --batch-size 100 --allocations 1000
    python bench/bench_settlement_cost.py --settlements 0 --watchers 0 --settlement-watchers 2 --busy 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _route(path: str) -> str:
    for suffix, name in (
        ("/clients/settlements", "settlements list"),
        ("/clients/settlementTransfers", "transfers list"),
        ("/partners", "partners list"),
        ("/clients/allocations", "allocations list"),
    ):
        if path.endswith(suffix):
            return name
    return "settlement GET" if "/clients/settlements/" in path else "allocation GET"


async def _run(args: argparse.Namespace, sim: object) -> None:
    from airflow.triggers.base import BaseEventTrigger

    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
    from airflow_provider_oes.triggers.settlement import SettlementStatusTrigger

    enterprise = sim.enterprise_id  # type: ignore[attr-defined]
    settlement_ids = [sim.add_settlement(final_status="pending") for _ in range(args.settlements)]  # type: ignore[attr-defined]
    allocation_ids = [sim.add_allocation(final_status="reserved") for _ in range(args.allocations)]  # type: ignore[attr-defined]
    tasks = []

    async def drain(trigger: object) -> None:
        async for _ in trigger.run():  # type: ignore[attr-defined]
            pass

    for settlement_id in settlement_ids:
        tasks.append(
            asyncio.ensure_future(drain(SettlementStatusTrigger(settlement_id, enterprise, "oes_bench", args.interval)))
        )
    for allocation_id in allocation_ids:
        tasks.append(
            asyncio.ensure_future(drain(AllocationStatusTrigger(allocation_id, enterprise, "oes_bench", args.interval)))
        )
    watchers = 0
    if args.watchers and hasattr(BaseEventTrigger, "create_shared_stream_producer"):
        from airflow_provider_oes.triggers.event import AllocationEventTrigger
        from tests.triggers._event_fakes import Accessor

        for statuses in (["cleared"], ["released"], ["cleared", "released"])[: args.watchers]:
            trigger = AllocationEventTrigger(oes_conn_id="oes_bench", statuses=statuses, poll_interval=args.interval)
            trigger.asset_state_store = Accessor()  # type: ignore[attr-defined]
            tasks.append(asyncio.ensure_future(drain(trigger)))
            watchers += 1
    elif args.watchers:
        print("AllocationEventTrigger needs Airflow 3.3: running without watchers")
    if args.settlement_watchers and hasattr(BaseEventTrigger, "create_shared_stream_producer"):
        from airflow_provider_oes.triggers.settlement_event import SettlementEventTrigger
        from tests.triggers._event_fakes import Accessor

        partner = sim.add_partner(dispute_window_minutes=60)  # type: ignore[attr-defined]
        for statuses in (["pending"], ["completed", "rejected"])[: args.settlement_watchers]:
            watcher = SettlementEventTrigger(
                enterprise_id=enterprise, oes_conn_id="oes_bench", statuses=statuses, poll_interval=args.interval
            )
            watcher.asset_state_store = Accessor()  # type: ignore[attr-defined]
            tasks.append(asyncio.ensure_future(drain(watcher)))
    await asyncio.sleep(args.interval * args.warmup)
    start = len(sim.requests)  # type: ignore[attr-defined]
    for _ in range(args.intervals):
        if args.busy and args.settlement_watchers:
            waiting = [sim.add_settlement(partner_id=partner, final_status="pending") for _ in range(args.busy)]  # type: ignore[attr-defined]
            await asyncio.sleep(args.interval / 2)
            for settlement_id in waiting:
                sim.set_settlement_status(settlement_id, "completed")  # type: ignore[attr-defined]
            await asyncio.sleep(args.interval / 2)
        else:
            await asyncio.sleep(args.interval)
    counted = Counter(_route(path) for _, path, _, _ in sim.requests[start:])  # type: ignore[attr-defined]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"{args.settlements} settlement sensors, {args.allocations} allocation sensors, {watchers} watchers, "
        f"{args.settlement_watchers} settlement watchers ({args.busy} new + {args.busy} completed per interval), "
        f"batch_size {args.batch_size}, interval {args.interval} s, over {args.intervals} intervals:"
    )
    total = sum(counted.values())
    for route, count in sorted(counted.items()):
        print(f"  {route:18s} {count / args.intervals:8.1f} requests per interval")
    allocation_side = counted["allocations list"] + counted["allocation GET"]
    print(f"  {'total':18s} {total / args.intervals:8.1f} requests per interval")
    print(f"  allocation side alone (baseline): {allocation_side / args.intervals:.1f} per interval")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settlements", type=int, default=1000)
    parser.add_argument("--allocations", type=int, default=0)
    parser.add_argument("--watchers", type=int, default=2)
    parser.add_argument("--settlement-watchers", type=int, default=0)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--intervals", type=int, default=5)
    args = parser.parse_args()

    from airflow_provider_oes.testing.connections import oes_connection_env
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        extra = {"enterprise_id": sim.enterprise_id, "batch_size": args.batch_size, "rate_limit_requests": 100000}
        os.environ.update(oes_connection_env("oes_bench", host=sim.url, token=sim.token, **extra))
        asyncio.run(_run(args, sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
