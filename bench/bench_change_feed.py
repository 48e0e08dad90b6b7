"""The change feed against id batches at N = 100,000 waiting allocations, side by side, in one run.

For each strategy a fresh worker process runs N :class:`AllocationStatusTrigger` in one event loop (as in a
triggerer; 5 s poll interval; BitGo's limit of 360 requests / 60 s in the connection's limiter, and enforced
by the simulator too), against the OES simulator in another process. Once the worker's poller has settled,
the simulator flips allocations on its own clock:

* **steady**: 20 flips per second (alternately ``cleared`` and ``released``) for ``--steady`` seconds;
* **burst**: then 10,000 flips within one interval (spread over 5 s).

The worker reports, over the steady window: requests per interval, share of the rate limit used, CPU
seconds per interval (``time.process_time`` of the worker, which holds only the triggers), the longest gap a
10 ms ticker saw (event-loop stall); over the whole run: peak RSS; for steady and burst flips: the delay from
each flip (its ``updatedAt``, the simulator's clock, the same machine's) to its trigger event, p50/p99/max;
and wrong events (an event for an allocation that did not flip, or with another status: must be 0).

**Restart**: a fresh worker takes over N waiting triggers whose last check is 10 minutes old, after 10 minutes
of changes at 20 per second (12,000 rows of history, 100 of them waiting allocations that flipped while no
triggerer ran). Reported: requests and seconds until every waiting trigger is covered (the feed: vouched by
the feed or checked by id; id batches: one full sweep), and that the 100 flipped ones got their events.

**Metrics** (feed only): after the burst has drained, steady flips go on while the worker switches Airflow's
StatsD metrics (InfluxDB-style tags, over UDP to a listener on 127.0.0.1 in this process) off and on in
alternating phases of ``--metrics-phase-intervals`` intervals (at least one 20 s metrics flush each; alternated
so that the machine's load drift cancels). Reported: CPU per interval off and on, and the CPU spent inside the
provider's metrics code, measured directly, as a share of the off CPU (issue 14: at most 2 %). The 10 ms stall
ticker is stopped for these phases: it is no part of a triggerer's work.

Run: ``python bench/bench_change_feed.py [--n 100000] [--steady 60] [--metrics-phases 6]`` (about 13 minutes on
2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import socket
import statistics
import sys
import threading
import time
from typing import Any

from _common import CONN_ID, LIMIT_PERIOD, LIMIT_REQUESTS, Meter, instrument, pct, run_worker, switch_metrics, worker

INTERVAL = 5.0


# ------------------------------------------------------------------------------------------- worker


async def _ticker(stop: asyncio.Event, gaps: list[tuple[float, float]]) -> None:
    """Every 10 ms: record (when, how late) so stalls can be attributed to a window afterwards."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        gaps.append((time.time(), loop.time() - before - 0.01))


async def _settled(strategy: str, enterprise_id: str, n: int, finished: Any, timeout: float) -> tuple[float, int]:
    """Wait until all ``n`` triggers registered and the poller covers every one; return (seconds, requests)."""
    from airflow_provider_oes.triggers import _polling as polling

    started = time.monotonic()
    deadline = started + timeout
    while (poller := polling.get_poller(CONN_ID, enterprise_id)) is None:
        await asyncio.sleep(0.01)
    while len(poller.waiters) + finished() < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    sweeps_at_full = poller.sweeps
    while time.monotonic() < deadline:
        if strategy == "feed":
            fs = poller.feed_strategy
            if (
                fs is not None
                and fs.feed is not None
                and fs.feed.polls >= 1
                and not fs.unvouched
                and fs.backfill.target is None
            ):
                break
        elif poller.sweeps >= sweeps_at_full + 2:  # the sweep running at full registration may have missed some
            break
        await asyncio.sleep(0.02)
    return time.monotonic() - started, poller.connection.client.requests_sent


def _watch_gc(pauses: list[tuple[float, int, float]]) -> None:
    """Record (when, generation, seconds) of every garbage collection: a full one over 100,000 triggers' objects
    is the likely cause of a long event-loop stall, and this tells it apart from the poller's own work."""
    import gc

    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.time(), int(info["generation"]), time.perf_counter() - started[0]))

    gc.callbacks.append(callback)


async def _worker_main(plan: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_oes.triggers import _polling as polling
    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

    ids: list[str] = plan["ids"]
    flips: dict[str, str] = plan["flips"]
    enterprise_id: str = plan["enterprise_id"]
    strategy: str = plan["strategy"]
    # Per event only what the report needs (received at, updatedAt): a triggerer hands each payload to Airflow
    # and keeps nothing, so holding 13,000 whole payloads (~1.1 kB each) would count ~15 MB of the benchmark's
    # own bookkeeping against the triggers' peak RSS.
    events: dict[str, tuple[float, str]] = {}
    wrong: list[str] = []
    all_seen = asyncio.Event()
    stop = asyncio.Event()
    gaps: list[tuple[float, float]] = []
    gc_pauses: list[tuple[float, int, float]] = []
    _watch_gc(gc_pauses)
    meter = Meter()
    if plan.get("metrics_phases"):
        meter.calibrate()
        instrument(meter)

    async def wait_one(trigger: AllocationStatusTrigger) -> None:
        async for event in trigger.run():
            payload = event.payload
            expected = flips.get(trigger.allocation_id)
            if expected is None or payload.get("status") != "terminal" or payload["allocation"]["status"] != expected:
                wrong.append(trigger.allocation_id)
                events[trigger.allocation_id] = (time.time(), "")
            else:
                events[trigger.allocation_id] = (time.time(), payload["allocation"]["updatedAt"])
            if len(events) >= len(flips) and all(i in events for i in flips):
                all_seen.set()

    # The process before any trigger exists (Airflow, the provider, the plan): what the triggers add is above it.
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ticker = asyncio.create_task(_ticker(stop, gaps))
    cpu0 = time.process_time()
    tasks = [
        asyncio.create_task(
            wait_one(AllocationStatusTrigger(i, enterprise_id, CONN_ID, INTERVAL, last_check=plan["last_check"]))
        )
        for i in ids
    ]
    settle_s, settle_requests = await _settled(
        strategy, enterprise_id, len(ids), lambda: len(events), plan["settle_timeout"]
    )
    poller = polling.get_poller(CONN_ID, enterprise_id)
    assert poller is not None
    client = poller.connection.client
    result: dict[str, Any] = {
        "strategy": strategy,
        "n": len(ids),
        "settle_s": settle_s,
        "settle_requests": settle_requests,
        "settle_cpu_s": time.process_time() - cpu0,
        "rss_mb_before_triggers": rss_before_mb,
    }
    fs = poller.feed_strategy
    if fs is not None:
        result["backfills"] = fs.backfills
        result["settle_id_requests"] = fs.id_check_requests
        result["settle_feed_pages"] = fs.feed.pages if fs.feed is not None else 0
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = float(line.split()[1])  # epoch (simulator clock) of the first flip
    windows = plan["windows"]  # name -> [start offset, end offset]
    marks: dict[str, tuple[float, float, int]] = {}  # name -> (cpu, time, requests) at the window's start

    async def mark(name: str, at: float) -> None:
        delay = t0 + at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        marks[name] = (time.process_time(), time.time(), client.requests_sent)

    marker = asyncio.gather(
        *(mark(f"{name}:{edge}", w[k]) for name, w in windows.items() for k, edge in enumerate(("start", "end")))
    )
    metrics_phases: list[dict[str, Any]] = []

    async def alternate_metrics() -> None:
        # Metrics off and on in alternating phases of the same run (the machine's load drifts: one before/after
        # pair would mostly measure the drift); each phase spans at least one metrics flush (20 s).
        for k, (start, end) in enumerate(plan["metrics_phases"]):
            delay = t0 + start - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # The 10 ms ticker (the stall meter, ~100 wake-ups a second) is no part of a triggerer's work: it
            # would inflate the CPU the metrics cost is compared with. The stall windows are over by now.
            stop.set()
            on = k % 2 == 1
            switch_metrics(on, plan["statsd_port"], poller, meter)
            cpu0, wall0, requests0, events0 = time.process_time(), time.time(), client.requests_sent, len(events)
            await asyncio.sleep(max(0.0, t0 + end - time.time()))
            intervals = (time.time() - wall0) / INTERVAL
            metrics_phases.append(
                {
                    "on": on,
                    "cpu_per_interval": (time.process_time() - cpu0) / intervals,
                    "metrics_cpu_per_interval": meter.net_seconds() / intervals if on else 0.0,
                    "datagrams_per_interval": meter.datagrams / intervals if on else 0.0,
                    "requests_per_interval": (client.requests_sent - requests0) / intervals,
                    "events_per_interval": (len(events) - events0) / intervals,
                }
            )
        switch_metrics(False, plan["statsd_port"], poller, meter)

    metrics_task = asyncio.create_task(alternate_metrics()) if plan.get("metrics_phases") else None
    deadline = t0 + plan["observe_until"]
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(all_seen.wait(), max(1.0, deadline - time.time()))
    last_mark = max((w[1] for w in windows.values()), default=0.0)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(marker, max(1.0, t0 + last_mark + 1.0 - time.time()))
    if metrics_task is not None:
        await metrics_task
        result["metrics_phases"] = metrics_phases
    stop.set()
    await ticker
    # The peak while the triggers wait; the cancellation of all N at once below is the benchmark's teardown.
    result["peak_rss_mb_running"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from airflow_provider_oes.triggers import _gc

    result["gc_freezes"], result["gc_thaws"] = _gc.freezes, _gc.thaws
    fs = poller.feed_strategy
    if fs is not None:
        result["missed_by_feed"] = len(fs.missed_by_feed)
        result["reconcile_requests"] = fs.reconcile_requests
        result["late_rows"] = fs.feed.late_rows if fs.feed is not None else 0
    result["limiter_waited_s"] = poller.connection.limiter.waited_seconds
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    for name in windows:
        a, b = marks.get(f"{name}:start"), marks.get(f"{name}:end")
        if a is None or b is None:
            continue
        intervals = (b[1] - a[1]) / INTERVAL
        result[f"{name}_requests_per_interval"] = (b[2] - a[2]) / intervals
        result[f"{name}_cpu_per_interval"] = (b[0] - a[0]) / intervals
        result[f"{name}_stall_ms"] = 1000 * max((g for t, g in gaps if a[1] <= t <= b[1]), default=0.0)
        result[f"{name}_gc_ms"] = 1000 * max((p for t, _, p in gc_pauses if a[1] <= t <= b[1]), default=0.0)
    delays: dict[str, list[float]] = {"steady": [], "burst": []}
    for allocation_id, (received, updated) in events.items():
        if allocation_id in wrong:
            continue
        group = plan["groups"].get(allocation_id)
        if group in delays:
            from airflow_provider_oes._time import parse_timestamp

            stamp = parse_timestamp(updated)
            assert stamp is not None
            delays[group].append(received - stamp)
    result["delays"] = {k: sorted(v) for k, v in delays.items()}
    result["flips"] = {
        g: sum(1 for i in flips if plan["groups"].get(i) == g) for g in ("steady", "burst", "outage", "metrics")
    }
    result["seen"] = {
        g: sum(1 for i in events if plan["groups"].get(i) == g and i not in wrong)
        for g in ("steady", "burst", "outage", "metrics")
    }
    result["wrong"] = len(wrong)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["stall_ms_all"] = 1000 * max((g for _, g in gaps), default=0.0)
    return result


# ------------------------------------------------------------------------------------------- parent


def _sim_now(sim: Any) -> float:
    return sim.client.now().timestamp()


def _extra(strategy: str) -> dict[str, Any]:
    # Batches of 200 ids for both: the id strategy's batches, and the feed's id checks (restart, safety net).
    return {"poll_strategy": strategy, "batch_size": 200}


class _StatsdListener:
    """A UDP listener on 127.0.0.1 that receives (and counts) the worker's StatsD datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.sock.recv(65536)
                self.datagrams += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def run_live(
    sim: Any, strategy: str, args: argparse.Namespace, rng: random.Random, statsd: _StatsdListener | None = None
) -> dict[str, Any]:
    """Steady flips then a burst, against N waiting triggers that a sensor just checked; then, with ``statsd``,
    steady flips again while metrics alternate off and on."""
    from airflow_provider_oes._time import format_timestamp

    sim.client.reset()
    ids = sim.client.add_allocations(args.n)
    steady_count = int(args.rate * args.steady)
    burst_at = args.steady + INTERVAL
    drain = 3 * INTERVAL if strategy == "feed" else 2 * (args.n / 200) / (LIMIT_REQUESTS / LIMIT_PERIOD) + INTERVAL
    phase_s = args.metrics_phase_intervals * INTERVAL
    metrics_at = burst_at + INTERVAL + drain + INTERVAL  # once the burst has drained
    phases = [[metrics_at + k * phase_s, metrics_at + (k + 1) * phase_s] for k in range(args.metrics_phases)]
    metrics_count = int(args.rate * phase_s * len(phases)) if statsd is not None else 0
    chosen = rng.sample(ids, steady_count + args.burst + metrics_count)
    steady_ids, burst_ids = chosen[:steady_count], chosen[steady_count : steady_count + args.burst]
    metrics_ids = chosen[steady_count + args.burst :]
    statuses = ("cleared", "released")
    flips = {i: statuses[k % 2] for k, i in enumerate(steady_ids)}
    flips.update({i: statuses[k % 2] for k, i in enumerate(burst_ids)})
    flips.update({i: statuses[k % 2] for k, i in enumerate(metrics_ids)})
    groups = {i: "steady" for i in steady_ids} | {i: "burst" for i in burst_ids} | {i: "metrics" for i in metrics_ids}
    plan = {
        "ids": ids,
        "flips": flips,
        "groups": groups,
        "enterprise_id": sim.enterprise_id,
        "strategy": strategy,
        "last_check": format_timestamp(_sim_now(sim)),  # the sensors' checks: just now, server time
        "settle_timeout": 600.0,
        # the steady window skips the first interval (flips just began) and ends before the burst
        "windows": {"steady": [INTERVAL, args.steady], "burst": [burst_at, burst_at + 3 * INTERVAL]},
        "observe_until": (phases[-1][1] if metrics_ids else burst_at + INTERVAL + drain),
        "metrics_phases": phases if metrics_ids else [],
        "statsd_port": statsd.port if statsd is not None else None,
    }

    def on_ready() -> float:
        t0 = _sim_now(sim) + 1.0
        sim.client.schedule_flips(steady_ids, status=statuses, start=1.0, rate=args.rate)
        sim.client.schedule_flips(
            burst_ids, status=statuses, at=[1.0 + burst_at + rng.uniform(0, INTERVAL) for _ in burst_ids]
        )
        if metrics_ids:
            sim.client.schedule_flips(metrics_ids, status=statuses, start=1.0 + metrics_at, rate=args.rate)
        return t0

    datagrams_before = statsd.datagrams if statsd is not None else 0

    sim.client.reset_counts()
    result = run_worker(__file__, sim, plan, _extra(strategy), on_ready)
    if statsd is not None:
        result["statsd_received"] = statsd.datagrams - datagrams_before
    result["sim_max_in_60s"] = sim.client.max_requests_in_window(window=LIMIT_PERIOD)
    result["sim_429"] = sum(1 for _, admitted in sim.client.token_requests() if not admitted)
    return result


def run_restart(sim: Any, strategy: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """A fresh poller takes over N waiting triggers last checked 10 minutes ago, after 10 minutes of changes."""
    from airflow_provider_oes._time import format_timestamp

    sim.client.reset()
    outage = 600.0
    history = int(args.rate * outage)
    # Created before the outage (the simulator never stamps updatedAt before createdAt): add them while its
    # clock runs 700 s behind, then put the clock right.
    sim.client.set_clock_offset(-(outage + 100.0))
    ids = sim.client.add_allocations(args.n + history)
    sim.client.set_clock_offset(0.0)
    waiting, others = ids[: args.n], ids[args.n :]
    flipped_waiting = rng.sample(waiting, 100)
    now = _sim_now(sim)
    last_check = now - outage
    changed = others[: history - 100] + flipped_waiting
    rng.shuffle(changed)
    statuses = ("cleared", "released")
    # 10 minutes of history: flips stamped evenly over the outage (late_by puts each updatedAt in the past).
    groups_of = 100
    for k in range(0, len(changed), groups_of):
        part = changed[k : k + groups_of]
        sim.client.schedule_flips(part, status=statuses, late_by=outage * (1 - k / len(changed)))
    while sim.client.pending_flips:
        time.sleep(0.05)
    flips = {i: sim.client.get_record(i)["status"] for i in flipped_waiting}
    plan = {
        "ids": waiting,
        "flips": flips,
        "groups": {i: "outage" for i in flipped_waiting},
        "enterprise_id": sim.enterprise_id,
        "strategy": strategy,
        "last_check": format_timestamp(last_check),
        "settle_timeout": 900.0,
        "windows": {},
        "observe_until": INTERVAL,
    }
    sim.client.reset_counts()
    result = run_worker(__file__, sim, plan, _extra(strategy), lambda: _sim_now(sim))
    result["sim_429"] = sum(1 for _, admitted in sim.client.token_requests() if not admitted)
    return result


def _report_metrics(r: dict[str, Any], args: argparse.Namespace) -> None:
    phases = r["metrics_phases"]
    off = [p["cpu_per_interval"] for p in phases if not p["on"]]
    on = [p["cpu_per_interval"] for p in phases if p["on"]]
    inside = [p["metrics_cpu_per_interval"] for p in phases if p["on"]]
    if not off or not on:
        return
    print(
        f"  metrics (StatsD with tags over UDP to a listener on 127.0.0.1, {len(off)} phases off and {len(on)} on "
        f"alternated, {args.metrics_phase_intervals} intervals each, {args.rate:g} flips/s): "
        + ", ".join(
            f"{'on' if p['on'] else 'off'} {p['cpu_per_interval']:.4f}/{p['datagrams_per_interval']:.1f}dg"
            for p in phases
        )
    )
    cpu_off, cpu_on, in_metrics = statistics.mean(off), statistics.mean(on), statistics.mean(inside)
    print(
        f"  CPU s per interval: off {cpu_off:.4f}, on {cpu_on:.4f} ({100 * (cpu_on / cpu_off - 1):+.1f} %, whole "
        f"process, load noise included); inside the metrics code {in_metrics * 1000:.2f} ms per interval = "
        f"{100 * in_metrics / cpu_off:.2f} % of the off CPU (target: at most 2 %); "
        f"datagrams received by the listener {r.get('statsd_received')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20.0, help="steady flips per second")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of steady flips")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--strategies", nargs="+", default=["feed", "id_batches"])
    parser.add_argument("--skip-restart", action="store_true")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--metrics-phases", type=int, default=6, help="feed only: alternating metrics off/on phases (0: none)"
    )
    parser.add_argument("--metrics-phase-intervals", type=int, default=4, help="poll intervals per metrics phase")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, _worker_main)
        return

    from airflow_provider_oes.testing.simulator import OESSimulatorProcess

    rng = random.Random(args.seed)
    began = time.monotonic()
    live: dict[str, dict[str, Any]] = {}
    restart: dict[str, dict[str, Any]] = {}
    with OESSimulatorProcess(port=0, rate_limit=(LIMIT_REQUESTS, LIMIT_PERIOD)) as sim:
        for strategy in args.strategies:
            statsd = _StatsdListener() if strategy == "feed" and args.metrics_phases else None
            try:
                live[strategy] = run_live(sim, strategy, args, rng, statsd)
            finally:
                if statsd is not None:
                    statsd.close()
            print(f"  done live {strategy}: {time.monotonic() - began:.0f} s", flush=True)
        if not args.skip_restart:
            for strategy in args.strategies:
                restart[strategy] = run_restart(sim, strategy, args, rng)
                print(f"  done restart {strategy}: {time.monotonic() - began:.0f} s", flush=True)

    per_interval_limit = LIMIT_REQUESTS / LIMIT_PERIOD * INTERVAL
    print()
    print(
        f"N = {args.n:,} waiting; {INTERVAL:g} s interval; limit {LIMIT_REQUESTS} / {LIMIT_PERIOD:g} s "
        f"(= {per_interval_limit:g} per interval); steady {args.rate:g} flips/s for {args.steady:g} s; "
        f"burst {args.burst:,} flips within one interval"
    )
    header = (
        f"{'strategy':<11} {'req/int':>7} {'limit%':>6} {'CPU s/int':>9} {'%core':>5} {'RSS MB':>6} {'stall ms':>8} "
        f"{'seen/flips':>11} {'p50 s':>6} {'p99 s':>6} {'max s':>6} | {'burst seen':>11} {'p50 s':>6} {'max s':>6} "
        f"{'req/int':>7} {'stall ms':>8} | {'wrong':>5} {'429s':>4} {'max/60s':>7}"
    )
    print(header)
    print("-" * len(header))
    for strategy, r in live.items():
        steady, burst = r["delays"]["steady"], r["delays"]["burst"]
        rpi = r.get("steady_requests_per_interval", float("nan"))
        cpu = r.get("steady_cpu_per_interval", float("nan"))
        print(
            f"{strategy:<11} {rpi:>7.2f} {100 * rpi / per_interval_limit:>5.1f}% {cpu:>9.3f} {100 * cpu / INTERVAL:>4.1f}% "
            f"{r['peak_rss_mb']:>6.0f} {r.get('steady_stall_ms', float('nan')):>8.1f} "
            f"{r['seen']['steady']:>5}/{r['flips']['steady']:<5} {pct(steady, 0.5):>6.2f} {pct(steady, 0.99):>6.2f} "
            f"{max(steady, default=float('nan')):>6.2f} | {r['seen']['burst']:>5}/{r['flips']['burst']:<5} "
            f"{pct(burst, 0.5):>6.2f} {max(burst, default=float('nan')):>6.2f} "
            f"{r.get('burst_requests_per_interval', float('nan')):>7.2f} {r.get('burst_stall_ms', float('nan')):>8.1f} | "
            f"{r['wrong']:>5} {r['sim_429']:>4} {r['sim_max_in_60s']:>7}"
        )
    print()
    for strategy, r in live.items():
        print(
            f"{strategy}: longest garbage collection in the steady window {r.get('steady_gc_ms', float('nan')):.0f} ms, "
            f"in the burst window {r.get('burst_gc_ms', float('nan')):.0f} ms"
        )
    for strategy, r in live.items():
        extra = ""
        if strategy == "feed":
            extra = (
                f"; reconciliation requests {r.get('reconcile_requests')}, missed by the feed {r.get('missed_by_feed')}, "
                f"late rows {r.get('late_rows')}"
            )
        print(
            f"{strategy}: settled {args.n:,} triggers in {r['settle_s']:.1f} s with {r['settle_requests']} requests "
            f"({r['settle_cpu_s']:.1f} CPU s); worst stall over the whole run {r['stall_ms_all']:.0f} ms; "
            f"limiter waited {r['limiter_waited_s']:.0f} s{extra}"
        )
    for strategy, r in live.items():
        print(
            f"{strategy}: peak RSS while the triggers wait {r.get('peak_rss_mb_running', float('nan')):.0f} MB "
            f"(whole process, with the benchmark cancelling all {args.n:,} at once at the end: {r['peak_rss_mb']:.0f} MB; "
            f"before the first trigger: {r.get('rss_mb_before_triggers', float('nan')):.0f} MB); "
            f"gc freezes {r.get('gc_freezes')}, thaws {r.get('gc_thaws')}"
        )
        if r.get("metrics_phases"):
            _report_metrics(r, args)
    if restart:
        print()
        print(f"Restart: a fresh poller takes over {args.n:,} waiting triggers last checked 10 minutes ago")
        print(f"  (10 minutes of history at {args.rate:g} changes/s; 100 of the waiting flipped meanwhile)")
        for strategy, r in restart.items():
            pages = r.get("settle_feed_pages")
            detail = (
                f" (feed pages {pages}, id-check requests {r.get('settle_id_requests')}, backfills {r.get('backfills')})"
                if strategy == "feed"
                else ""
            )
            print(
                f"  {strategy:<11} covered in {r['settle_s']:6.1f} s with {r['settle_requests']:4} requests{detail}; "
                f"outage flips seen {r['seen']['outage']}/{r['flips']['outage']}, wrong {r['wrong']}, 429s {r['sim_429']}"
            )
        ids_cost = -(-args.n // 200)
        print(
            f"  rule: the cheaper of paging back (about {int(args.rate * 630 / 1000) + 1} pages of 1000) and {ids_cost} id batches"
        )
    print(f"\ntotal bench time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
