"""Several processes sharing one BitGo token: a simulation on a virtual clock, real processes, their figures.

:func:`simulate` drives real :class:`~airflow_provider_oes._rate_limit.RateLimiter` instances (one per
simulated process, each with the full static limit as its ceiling) against a model of BitGo's per-token
limit (a sliding window of admitted requests; beyond it 429 with ``Retry-After`` in whole seconds, as the
simulator answers), on a virtual clock: minutes of traffic in milliseconds, the same every run.

:class:`Figures` turns what a server saw (``(time, admitted)`` per request, from the simulation or from the
real simulator's ``token_requests``) into the figures the tests assert and the benchmark prints.

:func:`run_processes` starts real poller processes (:mod:`tests.harness.poller_process`) with one token
against one simulator that enforces the per-token limit, flips allocations while they run, and collects
what the simulator saw and what every process reported.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._rate_limit import RateLimiter, RequestTicket

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

REPO_ROOT = Path(__file__).resolve().parents[2]


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (any order) that fall in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window, i) - i for i, t in enumerate(ordered)), default=0)


@dataclass
class Figures:
    """What a server saw from the processes sharing one token.

    :param limit: The token's limit (requests per window).
    :param window: The window in seconds.
    :param start: When the run started (same clock as the request times).
    :param end: When it ended.
    :param requests: ``(time, admitted)`` of every request, in order.
    """

    limit: int
    window: float
    start: float
    end: float
    requests: list[tuple[float, bool]]

    @property
    def throttled(self) -> list[float]:
        """Times of the requests answered 429."""
        return [t for t, admitted in self.requests if not admitted]

    @property
    def converged_at(self) -> float:
        """Seconds from the start to the last 429 (0 when there was none)."""
        return (self.throttled[-1] - self.start) if self.throttled else 0.0

    def after_convergence(self) -> list[float]:
        """Times of every request (admitted or not) after the last 429."""
        last = self.throttled[-1] if self.throttled else float("-inf")
        return [t for t, _ok in self.requests if t > last]

    def max_in_any_window_after_convergence(self) -> int:
        """The most requests the server received in any window after the last 429."""
        return max_in_window(self.after_convergence(), self.window)

    def per_window_after_convergence(self) -> float:
        """Requests per window after the last 429, averaged over the rest of the run."""
        times = self.after_convergence()
        last = self.throttled[-1] if self.throttled else self.start
        span = self.end - last
        return len(times) * self.window / span if span > 0 else 0.0

    def summary(self) -> str:
        """One line for logs and the benchmark."""
        return (
            f"{len(self.requests)} requests, {len(self.throttled)} answered 429, last 429 at "
            f"{self.converged_at:.1f} s; after it: max {self.max_in_any_window_after_convergence()} in any "
            f"{self.window:g} s window (limit {self.limit}), {self.per_window_after_convergence():.1f} per window"
        )


@dataclass
class _Process:
    name: str
    limiter: RateLimiter
    joins_at: float
    sent: int = 0
    throttled: int = 0
    episodes: list[float] = field(default_factory=list)


@dataclass
class SimulationResult:
    """The figures of a simulated run, plus each process's own counts.

    :param figures: What the token's server saw.
    :param sent: Requests sent by each process.
    :param throttled: 429 answers each process got.
    :param allowance: Each process's allowance (requests per period) at the end.
    :param episodes: When each process's limiter decreased (one congestion episode each).
    """

    figures: Figures
    sent: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    allowance: dict[str, int] = field(default_factory=dict)
    episodes: dict[str, list[float]] = field(default_factory=dict)


def simulate(
    processes: int,
    limit: int,
    window: float,
    duration: float,
    joins_at: list[float] | None = None,
    latency: float = 0.05,
    concurrency: int = 8,
) -> SimulationResult:
    """Processes that each always have more to send than the token allows, on one virtual clock.

    Each process runs ``concurrency`` workers (as the poller does); every worker asks its process's limiter,
    sends, gets the answer ``latency`` seconds later, releases the ticket and, on 429, penalizes the limiter
    with the ``Retry-After`` seconds. The server admits a request when fewer than ``limit`` admitted
    requests of the token arrived in the last ``window`` seconds.

    :param processes: How many processes share the token.
    :param limit: The token's limit per window, also every process's static ceiling (no division by hand).
    :param window: The window in seconds, also every process's period.
    :param duration: Seconds of virtual time to run.
    :param joins_at: When each process starts (default: all at 0).
    :param latency: Seconds from sending a request to its answer.
    :param concurrency: Requests one process has in flight at once.
    """
    now = [0.0]

    def clock() -> float:
        return now[0]

    starts = joins_at or [0.0] * processes
    procs = [_Process(f"p{i + 1}", RateLimiter(limit, window, clock=clock), starts[i]) for i in range(processes)]
    admitted_log: deque[float] = deque()
    seen: list[tuple[float, bool]] = []
    # Events: (time, sequence, kind, process index, ticket). Kinds: "try" (a worker asks the limiter) and
    # "answer" (the answer of a request sent earlier arrives).
    events: list[tuple[float, int, str, int, RequestTicket | None, float]] = []
    sequence = 0

    def push(at: float, kind: str, index: int, ticket: RequestTicket | None = None, retry_after: float = 0.0) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (at, sequence, kind, index, ticket, retry_after))

    for index, proc in enumerate(procs):
        for _ in range(concurrency):
            push(proc.joins_at, "try", index)
    while events:
        at, _seq, kind, index, ticket, retry_after = heapq.heappop(events)
        if at > duration:
            break
        now[0] = at
        proc = procs[index]
        if kind == "try":
            got = proc.limiter.try_acquire()
            if not isinstance(got, RequestTicket):
                push(at + max(got, 1e-6), "try", index)  # a rounding-size wait must still move time on
                continue
            proc.sent += 1
            while admitted_log and admitted_log[0] <= at - window:
                admitted_log.popleft()
            admitted = len(admitted_log) < limit
            seen.append((at, admitted))
            if admitted:
                admitted_log.append(at)
                push(at + latency, "answer", index, got, -1.0)
            else:
                wait = max(1, math.ceil(admitted_log[0] + window - at))
                push(at + latency, "answer", index, got, float(wait))
        else:
            assert ticket is not None
            proc.limiter.release(ticket)
            if retry_after >= 0:
                proc.throttled += 1
                before = proc.limiter.adaptive.decreases
                proc.limiter.penalize(retry_after, ticket)
                if proc.limiter.adaptive.decreases > before:
                    proc.episodes.append(at)
            push(at, "try", index)
    figures = Figures(limit, window, 0.0, duration, seen)
    return SimulationResult(
        figures,
        sent={p.name: p.sent for p in procs},
        throttled={p.name: p.throttled for p in procs},
        allowance={p.name: p.limiter.allowance for p in procs},
        episodes={p.name: p.episodes for p in procs},
    )


# ---------------------------------------------------------------------------------------------------------
# Real processes against the real simulator.


@dataclass
class ProcessRun:
    """What a run of real poller processes sharing one token produced.

    :param figures: What the simulator saw during the steady phase (every request of the token).
    :param expected: The final status each allocation was flipped to.
    :param seen: The final status each allocation's event carried (once per allocation).
    :param duplicates: Allocation ids that got more than one event.
    :param limiters: Each process's last limiter report (allowance, cap, 429s, episodes, requests sent).
    :param exit_codes: Each process's exit code.
    :param throttled_total: 429s the token got over the whole run (start-up and final flips included).
    """

    figures: Figures
    expected: dict[str, str]
    seen: dict[str, str]
    duplicates: list[str]
    limiters: list[dict[str, Any]]
    exit_codes: list[int | None]
    throttled_total: int

    @property
    def missed(self) -> list[str]:
        """Allocations whose flip no event reported (or reported wrongly)."""
        return sorted(a for a, status in self.expected.items() if self.seen.get(a) != status)


def run_processes(
    sim: OESSimulator,
    processes: int,
    allocations_per_process: int,
    steady_seconds: float,
    flip_every: float,
    poll_interval: float = 1.0,
    finish_timeout: float = 180.0,
) -> ProcessRun:
    """Start ``processes`` poller processes on one token, flip allocations while they run, collect figures.

    Every process gets the token's whole limit as its static limit (``rate_limit_requests`` /
    ``rate_limit_period`` set to the simulator's per-token limit: no division by hand) and one GET per
    allocation per ``poll_interval`` (batching off), so each alone would use the whole limit. During the
    steady phase one allocation per process flips every ``flip_every`` seconds (cleared and released in
    turn); then every other allocation clears and the processes must report them all.

    :param sim: A running simulator with its per-token rate limit set.
    :param processes: How many processes share the token.
    :param allocations_per_process: Allocations each process waits for.
    :param steady_seconds: Length of the measured phase, from the first process's start.
    :param flip_every: Seconds between two flips in each process's set during the steady phase.
    :param poll_interval: The triggers' poll interval.
    :param finish_timeout: Seconds the processes get to report the final flips.
    """
    limit = sim.rate_limit
    assert limit is not None, "the simulator must enforce a per-token rate limit"
    connection = json.dumps(
        {
            "conn_type": "oes",
            "host": sim.url,
            "password": sim.token,
            "extra": {
                "enterprise_id": sim.enterprise_id,
                "batching": False,
                "rate_limit_requests": limit[0],
                "rate_limit_period": limit[1],
            },
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_CONN_OES_DEFAULT"] = connection
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    groups = [
        [sim.add_allocation(final_status="reserved") for _ in range(allocations_per_process)] for _ in range(processes)
    ]
    expected: dict[str, str] = {}
    lines: list[list[dict[str, Any]]] = [[] for _ in range(processes)]
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="oes-shared-token-") as tmp:
        try:
            for index, ids in enumerate(groups):
                ids_file = Path(tmp) / f"ids-{index}.json"
                ids_file.write_text(json.dumps(ids))
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.harness.poller_process",
                        str(ids_file),
                        sim.enterprise_id,
                        "--poll-interval",
                        str(poll_interval),
                        "--timeout",
                        str(steady_seconds + finish_timeout + 120),
                    ],
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
                procs.append(proc)
                threading.Thread(target=_read_lines, args=(proc, lines[index]), daemon=True).start()
            deadline = time.monotonic() + 120
            while not all(any("started" in line for line in got) for got in lines):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"poller processes did not start: exit codes {[p.poll() for p in procs]}")
                time.sleep(0.1)
            start = min(next(line["started"] for line in got if "started" in line) for got in lines)
            flipped = 0
            while time.monotonic() < start + steady_seconds:
                next_flip = start + (flipped + 1) * flip_every
                time.sleep(max(0.0, min(next_flip, start + steady_seconds) - time.monotonic()))
                if time.monotonic() >= start + steady_seconds:
                    break
                for ids in groups:
                    if flipped < len(ids):
                        status = "cleared" if flipped % 2 == 0 else "released"
                        sim.set_status(ids[flipped], status, reason=None if status == "cleared" else "rejected")
                        expected[ids[flipped]] = status
                flipped += 1
            end = time.monotonic()
            for ids in groups:
                for allocation_id in ids:
                    if allocation_id not in expected:
                        sim.set_status(allocation_id, "cleared")
                        expected[allocation_id] = "cleared"
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(1.0, end + finish_timeout - time.monotonic()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    limiters: list[dict[str, Any]] = []
    for got in lines:
        reports = [line["limiter"] for line in got if "limiter" in line]
        limiters.append(reports[-1] if reports else {})
        for line in got:
            if "id" in line:
                if line["id"] in seen:
                    duplicates.append(line["id"])
                seen[line["id"]] = line["status"]
    every = sim.token_requests(sim.token)
    figures = Figures(limit[0], limit[1], start, end, [(t, ok) for t, ok in every if start <= t < end])
    throttled_total = sum(1 for _t, ok in every if not ok)
    return ProcessRun(figures, expected, seen, duplicates, limiters, [p.returncode for p in procs], throttled_total)


def _read_lines(proc: subprocess.Popen[str], into: list[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        with contextlib.suppress(ValueError):
            into.append(json.loads(raw))
