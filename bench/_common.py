"""What the fleet benchmarks share: the worker process that runs the triggers, and the metrics switch.

Each benchmark runs its triggers in a fresh worker process (``python bench/<script>.py --worker plan.json``),
one event loop as in a triggerer, against the OES simulator in another process: the worker's CPU and RSS are
the triggers' alone. The parent writes the plan, starts the worker with the connection in its environment,
and reads its stdout: ``READY`` (the triggers are settled: start the flips), ``RESULT <json>``.

The metrics switch turns Airflow's StatsD metrics on and off inside a running worker (alternated phases
cancel the machine's load drift) and measures the CPU spent inside the provider's metrics code directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

CONN_ID = "oes_bench"
LIMIT_REQUESTS = 360
"""BitGo's limit: requests per :data:`LIMIT_PERIOD` seconds per token."""
LIMIT_PERIOD = 60.0


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def worker(plan_path: str, main: Callable[[dict[str, Any]], Any]) -> None:
    """The worker process: run ``main(plan)`` in one event loop and print its result for the parent."""
    plan = json.loads(Path(plan_path).read_text())
    result = asyncio.run(main(plan))
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(
    script: str,
    sim: Any,
    plan: dict[str, Any],
    extra: dict[str, Any],
    on_ready: Callable[[], float | None],
    log_level: str = "WARNING",
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script --worker`` on ``plan`` with an ``oes`` connection to ``sim``; return its ``RESULT``.

    :param script: The benchmark's ``__file__``.
    :param extra: Connection extras besides ``enterprise_id``.
    :param on_ready: Called when the worker prints ``READY``; a number it returns is sent back as ``GO <n>``.
    :param env_extra: More environment for the worker (e.g. ``AIRFLOW__METRICS__*``).
    """
    conn = {
        "conn_type": "oes",
        "host": sim.url,
        "password": sim.token,
        "extra": {"enterprise_id": sim.enterprise_id, **extra},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(plan, handle)
        plan_path = handle.name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__METRICS__"))}
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", log_level)
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, script, "--worker", plan_path],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
    )
    result: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                go = on_ready()
                if go is not None:
                    proc.stdin.write(f"GO {go}\n")
                    proc.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
            elif line.strip() and not line.startswith("20"):  # the worker's own log lines start with a date
                print("   worker:", line.rstrip(), flush=True)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(plan_path)
    if result is None:
        raise RuntimeError(f"the worker of {Path(script).name} produced no result")
    return result


def create_allocations(sim: Any, n: int) -> list[str]:
    """``n`` reserved allocations on the simulator (its bulk add)."""
    return [str(i) for i in sim.client.add_allocations(n)]


# ------------------------------------------------------------------------------------------- metrics


class Meter:
    """CPU time (``time.thread_time``) spent in the provider's metrics code, and the datagrams it sent.

    The timing costs something itself (two ``thread_time`` system calls and the wrapper), and how much depends
    on where it runs: timed back to back on an empty function (:meth:`calibrate`) it costs less than inside a
    triggerer's loop, where each entry finds cold caches. For an entry point called per request or per event
    (a fraction of a microsecond each) that difference can be larger than the call itself. So such entry
    points (``sham=True`` in :meth:`wrap`) are measured against a control taken in the same place: every other
    call, the timing wraps an empty function instead (and the real call then runs untimed), and their net cost
    is (mean timed call - mean sham call) x calls. Entry points called rarely (a flush: milliseconds each)
    have the calibrated cost subtracted.
    """

    def __init__(self) -> None:
        self.active = False
        self.datagrams = 0
        self.by_name: dict[str, list[Any]] = {}
        """Per entry point: [timed CPU s, timed calls, sham CPU s, sham calls, sham-controlled, longest timed s]."""
        self.overhead = 0.0
        """CPU seconds the timing adds per call timed back to back on an empty function (:meth:`calibrate`)."""

    def reset(self) -> None:
        self.datagrams = 0
        for entry in self.by_name.values():
            entry[0], entry[1], entry[2], entry[3], entry[5] = 0.0, 0, 0.0, 0, 0.0

    def wrap(self, fn: Any, name: str, sham: bool = False) -> Any:
        """``fn`` timed while the meter is active; ``sham``: every other call times an empty function instead."""
        thread_time = time.thread_time
        entry = self.by_name.setdefault(name, [0.0, 0, 0.0, 0, sham, 0.0])

        def empty(*args: Any, **kwargs: Any) -> None:
            return None

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return fn(*args, **kwargs)
            if sham and entry[1] > entry[3]:
                # The control: the same timing, at the same place in the loop, around nothing.
                started = thread_time()
                empty(*args, **kwargs)
                entry[2] += thread_time() - started
                entry[3] += 1
                return fn(*args, **kwargs)
            started = thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                # Allocates nothing new per call: its own allocations would make the garbage collector
                # (which runs inside whichever call crosses its threshold) land in here more often.
                spent = thread_time() - started
                entry[0] += spent
                entry[1] += 1
                if spent > entry[5]:
                    entry[5] = spent

        return timed

    def calibrate(self) -> None:
        empty = self.wrap(lambda: None, "calibration")
        self.active = True
        for _ in range(20_000):
            empty()
        entry = self.by_name.pop("calibration")
        self.overhead = entry[0] / entry[1]
        self.active = False
        self.reset()

    def calls(self, name: str) -> int:
        """Calls of the entry point ``name`` since the last :meth:`reset` (timed and sham)."""
        entry = self.by_name[name]
        return int(entry[1] + entry[3])

    def net(self, name: str) -> float:
        """CPU seconds spent in ``name`` since the last :meth:`reset`, the timing's own cost taken out."""
        seconds, timed, sham_seconds, shams, controlled, _longest = self.by_name[name]
        if not timed:
            return 0.0
        if controlled and shams:
            return max(0.0, (seconds / timed - sham_seconds / shams) * (timed + shams))
        return max(0.0, seconds - timed * self.overhead)

    def net_calibrated(self, name: str) -> float:
        """As :meth:`net`, but with the back-to-back calibrated cost taken out (the measure before the control)."""
        seconds, timed, _sham_seconds, shams, _controlled, _longest = self.by_name[name]
        if not timed:
            return 0.0
        return max(0.0, (seconds / timed - self.overhead) * (timed + shams))

    def net_seconds(self) -> float:
        """CPU seconds in all entry points since the last :meth:`reset` (see :meth:`net`)."""
        return sum(self.net(name) for name in self.by_name)

    def net_seconds_calibrated(self) -> float:
        return sum(self.net_calibrated(name) for name in self.by_name)


class _CountingBackend:
    """Wraps Airflow's stats entry point: counts the calls (one datagram each for StatsD)."""

    def __init__(self, inner: Any, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.meter.datagrams += 1
            return target(*args, **kwargs)

        return counted


def instrument(meter: Meter) -> None:
    """Time every entry into the metrics code from the request sequence and the poller (none nests in another)."""
    from airflow_provider_oes import _metrics, _request
    from airflow_provider_oes.triggers import _polling as polling

    # Called per request or per event: measured against a sham control (see Meter). Per flush: calibrated.
    for owner, name, sham in [
        (_request.ApiCall, "attempt_started", True),
        (_request.ApiCall, "attempt_ended", True),
        (_metrics.PollerMetrics, "event", True),
        (_metrics.PollerMetrics, "reconciliation_finds", True),
        (polling.Poller, "flush_metrics", False),
    ]:
        setattr(owner, name, meter.wrap(getattr(owner, name), name, sham))


def switch_metrics(on: bool, port: int, poller: Any, meter: Meter) -> None:
    """Turn Airflow's StatsD metrics (InfluxDB-style tags, to 127.0.0.1:``port``) on or off for ``poller``."""
    from airflow_provider_oes import _metrics

    os.environ["AIRFLOW__METRICS__STATSD_ON"] = str(on)
    os.environ["AIRFLOW__METRICS__STATSD_HOST"] = "127.0.0.1"
    os.environ["AIRFLOW__METRICS__STATSD_PORT"] = str(port)
    os.environ["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] = "True"
    _metrics.reset(reinitialize=True)
    if on:
        assert _metrics.enabled()
        # Warm up outside the measurement: Airflow builds its StatsD client and loads its metrics registry on
        # the first call after a (re)initialization, once per process in a real triggerer.
        _metrics.retry("single", _metrics.tags_for("warm-up"))
        from airflow_provider_oes._metrics import backend as metrics_backend

        metrics_backend.backend = _CountingBackend(metrics_backend.backend, meter)
    # A poller and its client look metrics up once, when they start: hand them fresh collectors, keeping the
    # flush schedule (a fresh collector would flush at once: more often than a running poller does).
    last_flush = poller.metrics.last_flush
    poller.metrics = _metrics.PollerMetrics(*poller.key)
    poller.metrics.last_flush = last_flush
    poller.connection.client.metrics = _metrics.Batch()
    meter.active = on
    meter.reset()
