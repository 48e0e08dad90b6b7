"""The command line: ``python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from typing import TYPE_CHECKING

from airflow_provider_oes.testing.simulator._common import (
    BITGO_RATE_LIMIT,
    DEFAULT_ENTERPRISE_ID,
    DEFAULT_RELEASED_REASON,
    DEFAULT_TOKEN,
)
from airflow_provider_oes.testing.simulator.server import OESSimulator

if TYPE_CHECKING:
    from types import FrameType


def seed_demo(sim: OESSimulator) -> dict[str, str]:
    """
    Add the demo allocations: one clearing after 3 s, one released after 3 s, one reserved forever.

    :param sim: the simulator to seed.
    :return: label -> allocation id.
    """
    return {
        "clears_after_3s": sim.add_allocation(final_status="cleared", reserved_for_seconds=3),
        "released_after_3s": sim.add_allocation(
            final_status="released", reserved_for_seconds=3, final_reason=DEFAULT_RELEASED_REASON
        ),
        "reserved_forever": sim.add_allocation(final_status="reserved"),
    }


def _rate_limit(text: str) -> tuple[int, float] | None:
    """``360/60`` -> (360, 60.0); ``none`` -> no limit."""
    if text.strip().lower() == "none":
        return None
    limit, slash, window = text.partition("/")
    try:
        parsed = (int(limit), float(window) if slash else 60.0)
    except ValueError:
        parsed = (0, 0.0)
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"expected REQUESTS/SECONDS (e.g. 360/60) or none, not {text!r}")
    return parsed


def main(argv: list[str] | None = None) -> int:
    """
    Run the simulator in the foreground until SIGINT or SIGTERM.

    :param argv: command-line arguments (default ``sys.argv[1:]``).
    :return: the process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_oes.testing.simulator",
        description="Local OES client-allocation API simulator (binds 127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one (default 8080)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token to accept")
    parser.add_argument("--enterprise-id", default=DEFAULT_ENTERPRISE_ID, help="default enterprise id")
    parser.add_argument("--seed-demo", action="store_true", help="add a few demo allocations")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=BITGO_RATE_LIMIT,
        metavar="REQUESTS/SECONDS",
        help="per-token limit, e.g. 360/60 (BitGo's, the default); 'none' for no limit",
    )
    parser.add_argument(
        "--clock-offset", type=float, default=0.0, metavar="SECONDS", help="run the simulator's clock ahead (or behind)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = OESSimulator(
        port=args.port,
        token=args.token,
        enterprise_id=args.enterprise_id,
        rate_limit=args.rate_limit,
        clock_offset=args.clock_offset,
    )
    sim.start()
    try:
        print(f"OES simulator on {sim.url} token={sim.token} enterprise={sim.enterprise_id}", flush=True)
        if args.seed_demo:
            for label, allocation_id in seed_demo(sim).items():
                print(f"seeded {label} {allocation_id}", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        with contextlib.suppress(Exception):
            sim.stop()
    print("OES simulator stopped", flush=True)
    return 0
