"""Deferrable mode at fleet scale: N allocations waiting at once in one event loop, as in a triggerer.

For each configuration a fresh worker process runs N :class:`AllocationStatusTrigger` in one event loop
(polling every 5 s) against the OES simulator running in another process. Once the worker's first sweep is
done, this process flips half of the allocations to ``cleared`` / ``released`` at random moments of a
3-interval window; the other half stay ``reserved``. The worker keeps observing until every flip has
produced its event (or a bounded drain time ran out), then reports:

* requests per poll interval, CPU seconds per poll interval (``time.process_time`` of the worker, which
  holds only the triggers: the simulator and the flipping are other processes), peak RSS of the worker;
* the delay from each status flip (the record's ``updatedAt``) to its trigger event: p50 / p95 / max;
* the most requests the simulator received in any 60 s window;
* that every flipped allocation got the right event and no ``reserved`` one fired.

Configurations: N = 1,000 and N = 10,000, each with batching on (the connection's defaults: 100 ids per
list request, rate limiter 360 requests / 60 s) and batching off (one single GET per allocation per poll
and no client-side limiter: the way other providers poll). For batching off the table also shows how far
over BitGo's limit that rate is, and how long one sweep would take at the limit's pace.

Run: ``python bench/bench_deferrable.py [--sizes 1000 10000] [--interval 5] [--window-intervals 3]``
(about 2.5 minutes on 2 cores).

Closing note: figures measured on a 2-core machine (simulator in its own process; 2026-11-25)
---------------------------------------------------------------------------------------------
::

       N batching req/interval  x limit max req/60s CPU s/interval peak RSS MB s/sweep  seen/flips delay p50 s   p95 s   max s wrong
    1000       on          8.7     0.29          27          0.037         120     5.0   500/500          2.49    4.79    5.00     0
    1000      off        755.8    25.19        2436          1.000         121     5.4   500/500          2.59    5.32    6.81     0
   10000       on         27.7     0.92         360          0.169         150    13.0  5000/5000         6.94   13.51   15.55     0
   10000      off       2590.9    86.36       10364          3.267         149    20.0  4184/5000         6.91   15.29   19.07     0

* N = 1,000, batching on: 10 list requests per sweep, a full sweep every 5 s interval, every flip seen
  within one interval (max 5.0 s), 27x fewer CPU seconds than one GET per allocation.
* N = 10,000, batching on: 0.17 CPU s per 5 s interval (3.4 % of a core), 150 MB peak RSS, at most 360
  requests in any 60 s window over a 65 s observation (the limiter paced 100-request sweeps at 6 requests/s);
  every flip seen within 15.6 s, under one full sweep at the limit's pace (16.7 s).
* Batching off (one GET per allocation per poll, no limiter, as other providers poll): 25x BitGo's limit at
  N = 1,000 and 86x at N = 10,000 (every request past 360 / 60 s would be answered 429); at N = 10,000 a sweep
  takes 20 s of 65 % of a core and 16 % of the flips were not yet seen 5 s after the window. Kept under the
  limit, one sweep would take 167 s (N = 1,000) or 1,667 s (N = 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from _common import CONN_ID, LIMIT_PERIOD, LIMIT_REQUESTS, create_allocations, pct, run_worker, worker

# ------------------------------------------------------------------------------------------- worker


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _worker_main(plan: dict[str, Any]) -> dict[str, Any]:
    import resource

    from airflow_provider_oes.triggers import _polling as polling
    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

    ids: list[str] = plan["ids"]
    flips: dict[str, str] = plan["flips"]
    interval: float = plan["interval"]
    enterprise_id: str = plan["enterprise_id"]
    events: dict[str, tuple[float, dict[str, Any]]] = {}
    all_flipped = asyncio.Event()

    async def wait_one(trigger: AllocationStatusTrigger) -> None:
        async for event in trigger.run():
            events[trigger.allocation_id] = (time.time(), event.payload)
            if trigger.allocation_id in flips and all(i in events for i in flips):
                all_flipped.set()

    tasks = [asyncio.create_task(wait_one(AllocationStatusTrigger(i, enterprise_id, CONN_ID, interval))) for i in ids]
    poller = None
    while poller is None or poller.sweeps < 1:
        await asyncio.sleep(0.01)
        poller = polling.get_poller(CONN_ID, enterprise_id)
    client = poller.connection.client
    print("READY", flush=True)  # the parent starts flipping now

    started, cpu0, requests0, sweeps0 = time.time(), time.process_time(), client.requests_sent, poller.sweeps
    window = plan["window"]
    deadline = started + max(window + plan["drain"], plan["min_observe"])
    await asyncio.sleep(max(window, plan["min_observe"]))
    remaining = deadline - time.time()
    if remaining > 0 and not all_flipped.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(all_flipped.wait(), remaining)
    ended, cpu1, requests1 = time.time(), time.process_time(), client.requests_sent
    sweeps = poller.sweeps - sweeps0

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.1)
    idle = client.is_closed and polling.get_poller(CONN_ID, enterprise_id) is None

    intervals = (ended - started) / interval
    delays = []
    wrong = 0
    for allocation_id, (received, payload) in events.items():
        expected = flips.get(allocation_id)
        if expected is None or payload.get("status") != "terminal" or payload["allocation"]["status"] != expected:
            wrong += 1
            continue
        delays.append(received - _epoch(payload["allocation"]["updatedAt"]))
    return {
        "n": len(ids),
        "flips": len(flips),
        "seen": len(delays),
        "wrong": wrong,
        "requests_per_interval": (requests1 - requests0) / intervals,
        "cpu_per_interval": (cpu1 - cpu0) / intervals,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "observed_s": ended - started,
        "sweeps": sweeps,
        "delays": sorted(delays),
        "limiter_waited_s": poller.connection.limiter.waited_seconds,
        "idle_after_cancel": idle,
    }


# ------------------------------------------------------------------------------------------- parent


def _flip_all(url: str, schedule: list[tuple[float, str, str]], start: float) -> None:
    from airflow_provider_oes.testing.simulator import OESSimulatorClient

    def run(part: list[tuple[float, str, str]]) -> None:
        client = OESSimulatorClient(url)
        try:
            for offset, allocation_id, status in part:
                delay = start + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                client.set_status(allocation_id, status)
        finally:
            client.close()

    threads = 4
    parts = [schedule[k::threads] for k in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, parts))


def _max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best = 0
    for index, stamp in enumerate(stamps):
        best = max(best, bisect.bisect_left(stamps, stamp + window) - index)
    return best


def run_config(sim: Any, n: int, batching: bool, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    sim.client.reset()
    created = time.monotonic()
    ids = create_allocations(sim, n)
    flipped = rng.sample(ids, n // 2)
    window = args.interval * args.window_intervals
    schedule = sorted((rng.uniform(0, window), i, rng.choice(["cleared", "released"])) for i in flipped)
    if batching:
        # Let every flip be seen: a full sweep at the limit's pace plus one interval, at least two intervals.
        sweep_at_limit = (n / args.batch_size) * LIMIT_PERIOD / LIMIT_REQUESTS
        drain = max(2 * args.interval, sweep_at_limit + args.interval)
        # Where the limit binds (a sweep takes longer than an interval), watch a whole 60 s window.
        min_observe = LIMIT_PERIOD + args.interval if sweep_at_limit > args.interval else 0.0
        # This benchmark measures polling by ids (the change feed, now the default, has bench_change_feed.py).
        extra = {"poll_strategy": "id_batches", "batching": True, "batch_size": args.batch_size}
    else:
        drain = args.interval
        min_observe = 0.0
        extra = {
            "poll_strategy": "single",
            "batching": False,
            "rate_limit_requests": 10**9,
        }  # no client-side limit, as other providers
    plan = {
        "ids": ids,
        "flips": {i: s for _, i, s in schedule},
        "interval": args.interval,
        "enterprise_id": sim.enterprise_id,
        "window": window,
        "drain": drain,
        "min_observe": min_observe,
    }
    setup_s = time.monotonic() - created
    flippers: list[threading.Thread] = []

    def start_flipping() -> None:
        flippers.append(threading.Thread(target=_flip_all, args=(sim.url, schedule, time.monotonic())))
        flippers[0].start()

    try:
        result = run_worker(__file__, sim, plan, extra, start_flipping, log_level="ERROR")
    finally:
        for flipper in flippers:
            flipper.join()
    api_stamps = [r[3] for r in sim.client.requests]
    result["max_in_60s"] = _max_in_window(api_stamps, LIMIT_PERIOD)
    result["total_requests"] = len(api_stamps)
    result["batching"] = batching
    result["setup_s"] = setup_s
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval in seconds")
    parser.add_argument("--window-intervals", type=int, default=3, help="intervals during which flips happen")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, _worker_main)
        return

    from airflow_provider_oes.testing.simulator import OESSimulatorProcess

    rng = random.Random(args.seed)
    results = []
    began = time.monotonic()
    with OESSimulatorProcess(port=0, rate_limit=None) as sim:  # the client-side limiter is what is measured
        for n in args.sizes:
            for batching in (True, False):
                result = run_config(sim, n, batching, args, rng)
                results.append(result)
                print(
                    f"  done N={n} batching={'on' if batching else 'off'}: observed {result['observed_s']:.1f} s, "
                    f"{result['sweeps']} sweeps",
                    flush=True,
                )

    limit_rate = LIMIT_REQUESTS / LIMIT_PERIOD
    print()
    print(
        f"Poll interval {args.interval:g} s; limit {LIMIT_REQUESTS} requests / {LIMIT_PERIOD:g} s; batch size {args.batch_size}"
    )
    header = (
        f"{'N':>6} {'batching':>8} {'req/interval':>12} {'x limit':>8} {'max req/60s':>11} {'CPU s/interval':>14} "
        f"{'peak RSS MB':>11} {'s/sweep':>7} {'seen/flips':>11} {'delay p50 s':>11} {'p95 s':>7} {'max s':>7} {'wrong':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        over = (r["requests_per_interval"] / args.interval) / limit_rate
        print(
            f"{r['n']:>6} {'on' if r['batching'] else 'off':>8} {r['requests_per_interval']:>12.1f} {over:>8.2f} "
            f"{r['max_in_60s']:>11} {r['cpu_per_interval']:>14.3f} {r['peak_rss_mb']:>11.0f} "
            f"{r['observed_s'] / max(r['sweeps'], 1):>7.1f} {r['seen']:>5}/{r['flips']:<5} {statistics.median(r['delays']) if r['delays'] else float('nan'):>11.2f} "
            f"{pct(r['delays'], 0.95):>7.2f} {max(r['delays'], default=float('nan')):>7.2f} {r['wrong']:>5}"
        )
    print()
    for r in results:
        n = r["n"]
        if r["batching"]:
            sweep_at_limit = (n / args.batch_size) / limit_rate
            print(
                f"N={n} batching on: {n // args.batch_size} list requests per sweep; a sweep at the limit's pace "
                f"takes {sweep_at_limit:.1f} s; limiter waited {r['limiter_waited_s']:.0f} s in total; "
                f"max requests in any 60 s window {r['max_in_60s']} (limit {LIMIT_REQUESTS}); "
                f"all cancelled triggers left the poller idle and the client closed: {r['idle_after_cancel']}"
            )
        else:
            rate = r["requests_per_interval"] / args.interval * LIMIT_PERIOD
            print(
                f"N={n} batching off (no limiter): {rate:.0f} requests per 60 s = {rate / LIMIT_REQUESTS:.1f}x BitGo's "
                f"limit (would be answered 429); one sweep at the limit's pace would take {n / limit_rate:.0f} s "
                f"({n / limit_rate / args.interval:.0f} poll intervals)"
            )
    print(f"\ntotal bench time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
