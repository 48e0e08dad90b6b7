"""``new_allocations``' cost against an asset with 100,000 events in its look-back, against the old approach.

The asset holds ``--events`` watcher events (one full allocation record each, the shape the trigger emits)
spread over ``--days`` days. The run carries ``--run-size`` cleared allocations, one of them replayed from the
start of that span (an old allocation in a replay): the old look-back (oldest ``updatedAt`` minus 1 h) then
covers every stored event.

Each query is answered the way Airflow 3.3.2 answers ``inlet_events[asset].after(...).before(...)``: the
matching events are selected by timestamp (an index: cost proportional to the answer), serialised to the JSON
the execution API sends, and parsed by the task SDK's own models (``AssetEventsResult`` ->
``AssetEventResult``), which is what the task pays. The database's and API server's own work is not counted.

Variants, in one process (time: median of ``--runs`` rounds that alternate the variants, without tracing;
memory: tracemalloc's peak above what the process held before the call, in a separate traced call):

* ``old``: the code of main before issue 20 (one query for the whole window, every event with its extra);
* ``paged``: ``new_allocations`` without acknowledgements (same window, ``page_size`` events per query,
  keeping only the keys the run carries);
* ``acked``: ``new_allocations(acknowledge=True)`` (acknowledgements in an in-memory state store; the events
  read are those of :data:`~airflow_provider_oes.assets.RACE_WINDOW` before the run's first event).

Run: ``python bench/bench_new_allocations.py [--events 100000] [--days 7] [--run-size 50] [--runs 3]``
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._asset_events import AssetStateStore, InletEvents, dag_run

T_END = datetime(2026, 12, 1, tzinfo=timezone.utc)
ASSET_NAME, ASSET_URI = "oes_cleared_allocations", "oes://sim-enterprise/allocations/cleared"


def _record(i: int, updated: datetime) -> dict[str, Any]:
    """A full allocation record as the watcher emits it (about 600 bytes of JSON)."""
    return {
        "id": f"{i:08x}-9b0d-4c2e-8f1a-0123456789ab",
        "amount": {"currency": "ofctbtc", "quantity": str(10**18 + i)},
        "connectionId": "c0ffee00-0000-4000-8000-000000000001",
        "clientExternalId": f"client-ext-{i}",
        "partnerExternalId": f"partner-ext-{i}",
        "initiatedBy": "user-1",
        "notes": "settlement of the day, batch 7",
        "createdAt": (updated - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "updatedAt": updated.isoformat().replace("+00:00", "Z"),
        "retriable": False,
        "reason": None,
        "status": "cleared",
        "type": "allocation",
    }


class _Store:
    """The asset's events as the metadata DB holds them: sorted timestamps and each event's JSON."""

    def __init__(self, events: int, days: float) -> None:
        start = T_END - timedelta(days=days)
        step = (T_END - start) / events
        self.stamps: list[datetime] = []
        self.rows: list[str] = []
        for i in range(events):
            stamp = start + step * i
            record = _record(i, stamp - timedelta(seconds=2))
            self.stamps.append(stamp)
            self.rows.append(
                json.dumps(
                    {
                        "id": i + 1,
                        "timestamp": stamp.isoformat(),
                        "extra": {"from_trigger": True, "payload": {"allocations": [record]}},
                        "asset": {"name": ASSET_NAME, "uri": ASSET_URI, "group": "asset", "extra": {}},
                        "created_dagruns": [],
                    }
                )
            )
        self.queries = 0
        self.returned = 0

    def answer(self, after: str | None, before: str | None, ascending: bool, limit: int | None) -> list[Any]:
        from airflow.sdk.execution_time.comms import AssetEventsResult

        low = bisect.bisect_left(self.stamps, datetime.fromisoformat(after)) if after else 0
        high = bisect.bisect_right(self.stamps, datetime.fromisoformat(before)) if before else len(self.stamps)
        picked = self.rows[low:high] if ascending else self.rows[low:high][::-1]
        if limit:
            picked = picked[:limit]
        self.queries += 1
        self.returned += len(picked)
        wire = '{"asset_events":[' + ",".join(picked) + '],"type":"AssetEventsResult"}'
        return list(AssetEventsResult.model_validate_json(wire).iter_asset_event_results())


# --- the old approach (main before issue 20), kept verbatim in substance for the baseline ---


def _old_first_deliveries(triggering_events: Any, earlier_events: Any) -> list[dict[str, Any]]:
    from airflow_provider_oes.assets import allocations_from_asset_event

    def stamp_of(e: Any) -> datetime | None:
        s = getattr(e, "timestamp", None)
        return s if isinstance(s, datetime) else None

    triggering = sorted(triggering_events, key=lambda e: (stamp_of(e) is None, stamp_of(e) or datetime.min))
    stamps = [s for e in triggering if (s := stamp_of(e)) is not None]
    first_at = min(stamps) if stamps else None
    seen: set[str] = set()
    if first_at is not None:
        for event in earlier_events:
            s = stamp_of(event)
            if s is not None and s < first_at:
                seen.update(str(a.get("id", "")).lower() for a in allocations_from_asset_event(event))
    found: dict[str, dict[str, Any]] = {}
    for event in triggering:
        for allocation in allocations_from_asset_event(event):
            key = str(allocation.get("id", "")).lower()
            if key and key not in seen:
                found.setdefault(key, allocation)
    return list(found.values())


def _old_new_allocations(asset: Any, triggering_asset_events: Any, inlet_events: Any) -> list[dict[str, Any]]:
    from airflow_provider_oes._time import parse_time
    from airflow_provider_oes.assets import CLOCK_MARGIN, allocations_from_asset_event

    triggering = list(triggering_asset_events[asset])
    stamps = [e.timestamp for e in triggering]
    updated = [
        parse_time(a["updatedAt"], "updatedAt")
        for event in triggering
        for a in allocations_from_asset_event(event)
        if a.get("updatedAt")
    ]
    if not stamps or not updated:
        return _old_first_deliveries(triggering, [])
    earlier = inlet_events[asset].after((min(updated) - CLOCK_MARGIN).isoformat()).before(min(stamps).isoformat())
    return _old_first_deliveries(triggering, earlier)


# --- the measurement ---


def _measure(events: int, days: float, run_size: int, runs: int) -> dict[str, dict[str, Any]]:
    import gc

    from airflow_provider_oes.assets import new_allocations

    store = _Store(events, days)
    # The run: ``run_size`` allocations that cleared just now, the first replayed from the start of the span.
    first_at = T_END + timedelta(seconds=30)
    records = [_record(events + i, T_END + timedelta(seconds=i % 20)) for i in range(run_size)]
    records[0] = _record(events, T_END - timedelta(days=days))
    run_event = SimpleNamespace(
        timestamp=first_at, extra={"from_trigger": True, "payload": {"allocations": records}}, created_dagruns=[]
    )
    triggering = {"asset": [run_event]}

    def call(variant: str) -> list[dict[str, Any]]:
        inlet = InletEvents("asset", [], answer=store.answer)
        if variant == "old":
            return _old_new_allocations("asset", triggering, inlet)
        if variant == "paged":
            return new_allocations("asset", triggering, inlet)
        context = {"asset_state_store": AssetStateStore(), "dag_run": dag_run("d", "r")}
        return new_allocations("asset", triggering, inlet, acknowledge=True, context=context)

    results: dict[str, dict[str, Any]] = {v: {"seconds": [], "queries": 0, "events_read": 0} for v in VARIANTS}
    for variant in VARIANTS:  # warm-up (imports, pydantic schemas) and a check of the answer
        found = call(variant)
        assert len(found) == run_size, (variant, len(found))
    # Rounds alternate the variants, so the machine's load drift falls on each alike.
    for _ in range(runs):
        for variant in VARIANTS:
            gc.collect()
            store.queries = store.returned = 0
            start = time.perf_counter()
            call(variant)
            results[variant]["seconds"].append(time.perf_counter() - start)
            results[variant]["queries"], results[variant]["events_read"] = store.queries, store.returned
    for variant in VARIANTS:
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        call(variant)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        results[variant]["seconds"] = statistics.median(results[variant]["seconds"])
        results[variant]["peak_bytes"] = peak - before
    return results


VARIANTS = ("old", "paged", "acked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--run-size", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = _measure(args.events, args.days, args.run_size, args.runs)
    base = results["old"]
    print(
        f"new_allocations against {args.events:,} events over {args.days:g} days "
        f"(run of {args.run_size} allocations, one replayed from the start); time: median of {args.runs} "
        "alternating rounds; memory: tracemalloc peak of one call"
    )
    print(
        f"{'variant':<8} {'time':>9} {'x old':>7} {'peak memory':>12} {'x old':>7} {'queries':>8} {'events read':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:<8} {r['seconds'] * 1000:>7.0f}ms {r['seconds'] / base['seconds']:>7.3f} "
            f"{r['peak_bytes'] / 2**20:>10.1f}MB {r['peak_bytes'] / base['peak_bytes']:>7.3f} "
            f"{r['queries']:>8} {r['events_read']:>12,}"
        )


if __name__ == "__main__":
    main()
