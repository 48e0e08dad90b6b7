"""One triggerer-like process: many ``AllocationStatusTrigger``s in one event loop, sharing one poller.

Run as ``python -m tests.harness.poller_process IDS_FILE ENTERPRISE_ID`` with ``AIRFLOW_CONN_OES_DEFAULT``
set (the JSON form; outside a task Airflow reads connections from the environment). Every trigger runs as
the triggerer runs it (``async for event in trigger.run()``), so all of them share this process's poller,
HTTP client and rate limiter, exactly as in a triggerer. Prints JSON lines on stdout:

* ``{"started": t}`` once the triggers are running;
* ``{"id", "status", "at"}`` for every event (``status``: the allocation's final status, or ``error``);
* ``{"limiter": {...}, "at"}`` every second: this process's allowance, learned cap, 429s and episodes;
* ``{"done": t}`` when every trigger fired or the timeout ran out.

Times are ``time.monotonic()``, which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _run(ids: list[str], enterprise_id: str, poll_interval: float, timeout: float) -> int:
    from airflow_provider_oes.triggers import _polling as polling
    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

    async def wait_for(allocation_id: str) -> None:
        trigger = AllocationStatusTrigger(allocation_id, enterprise_id, poll_interval=poll_interval)
        async for event in trigger.run():
            payload = event.payload
            status = payload.get("allocation", {}).get("status") if payload.get("status") == "terminal" else "error"
            _emit(id=allocation_id, status=status, at=time.monotonic(), payload=payload if status == "error" else None)
            return

    async def report() -> None:
        while True:
            await asyncio.sleep(1.0)
            poller = polling.get_poller("oes_default", enterprise_id)
            if poller is None or not poller.connected:
                continue
            limiter = poller.connection.limiter
            adaptive = limiter.adaptive
            _emit(
                limiter={
                    "allowance": limiter.allowance,
                    "cap": round(adaptive.cap, 1),
                    "throttled": adaptive.throttled,
                    "episodes": adaptive.decreases,
                    "sent": poller.connection.client.requests_sent,
                },
                at=time.monotonic(),
            )

    tasks = [asyncio.create_task(wait_for(allocation_id)) for allocation_id in ids]
    reporter = asyncio.create_task(report())
    _emit(started=time.monotonic())
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    reporter.cancel()
    await asyncio.gather(*pending, reporter, return_exceptions=True)
    _emit(done=time.monotonic(), pending=len(pending))
    return 0 if not pending else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids_file", type=Path, help="JSON list of allocation ids to wait for")
    parser.add_argument("enterprise_id")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up on the rest")
    args = parser.parse_args()
    ids = json.loads(args.ids_file.read_text())
    return asyncio.run(_run(ids, args.enterprise_id, args.poll_interval, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
