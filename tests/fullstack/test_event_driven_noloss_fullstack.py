"""Issue 20 on a real stack: event-driven settlement loses nothing across a pause, a burst and stranded events.

A real dag-processor, scheduler, triggerer and API server on PostgreSQL run example 7
(``example_oes_event_driven_settlement.py``) alone: cleared allocations -> ``oes_event_driven_settlement``
(mapped ``settle``), released ones -> ``oes_event_driven_release_alert``, each DAG on its own watched asset, one
shared change feed behind both watchers. One stack serves the three tests (PostgreSQL's start is the costly
part); the example reads its knobs from the environment: 1 s polls, at most :data:`CAP` allocations per event,
re-emission of unacknowledged allocations after :data:`REDELIVER_AFTER` seconds.

1. A 20-minute pause of the settlement DAG (server time: the simulator's clock is moved forward, the test does
   not wait 20 minutes) while the alert DAG stays unpaused, so that its watcher keeps the shared feed open and
   the feed forgets the pause's first clearings (900 s memory). On unpause every cleared allocation is acted on
   exactly once, released ones by no settlement run. Prints the delivery delay after the unpause.
2. A burst of more allocations than the cap: every event within the cap, each allocation acted on once, every
   run succeeds.
3. ``max_active_runs=1`` (``[core] max_active_runs_per_dag`` of a restarted dag-processor: the example sets
   none) with runs slower than the poll interval and allocations clearing while a run is active: a steady
   stream, then two clearings whose events are both stored while one run is active (held there by an empty
   ``default_pool``, as a run waiting for a worker slot is, so that the case does not depend on the machine's
   speed). Airflow 3.3.2 strands the second (apache/airflow#56050: it comes after the DAG's queue row was
   created), and nothing clears after it: only the watcher's re-emission can deliver it. Each allocation's
   wait, from its clearing to the end of the run that settled it, must stay within a bound derived from the
   poll interval, ``redeliver_after`` and the measured run and scheduling times; prints the waits (p50/max).

Acting is counted per allocation id through the REST API (the runs' triggering asset events and what the mapped
``settle`` tasks returned) and from the acknowledgements in the asset state store. Waits poll conditions with
generous deadlines (the machine is shared); nothing is asserted on a fixed sleep. Each test prints its duration
and the load average.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fullstack._support import (
    ALERT_DAG,
    CLEARED_ASSET,
    SETTLE_DAG,
    EventLedger,
    Ledger,
    acknowledgement_records,
    api_time,
    metadata_rows,
)
from tests.harness.fullstack import EXAMPLE_DAGS, FullStack, oes_connection_json

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.fullstack, pytest.mark.integration]

POLL_INTERVAL = 1.0
"""``OES_EVENT_POLL_INTERVAL`` of both watchers (seconds)."""
CAP = 10
"""``OES_MAX_ALLOCATIONS_PER_EVENT``: small, so that a burst of 35 needs several events."""
REDELIVER_AFTER = 20.0
"""``OES_REDELIVER_AFTER`` of the cleared watcher (seconds; 600 by default)."""
FEED_PAGE_SIZE = 8
"""Rows per page of the feed and of its look-back: the pause's backlog takes several pages."""
DEFAULT_MAX_ACTIVE_RUNS = 16
"""``[core] max_active_runs_per_dag``'s default: the example sets no ``max_active_runs`` of its own."""
PAUSE_STEPS, PAUSE_STEP_SECONDS = 10, 120.0
"""The pause: 10 steps of 2 minutes of server time, two clearings per step."""
BURST = 35


# ---------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def noloss_simulator() -> Iterator[OESSimulator]:
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        yield sim


@pytest.fixture(scope="module")
def noloss_stack(noloss_simulator: OESSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    """PostgreSQL and the four components; both example DAGs unpaused, both watchers running."""
    sim = noloss_simulator
    dags = tmp_path_factory.mktemp("noloss-dags")
    (dags / "example_oes_event_driven_settlement.py").symlink_to(
        EXAMPLE_DAGS / "example_oes_event_driven_settlement.py"
    )
    connection = json.loads(oes_connection_json(sim.url, sim.token, sim.enterprise_id))
    connection["extra"]["feed_page_size"] = FEED_PAGE_SIZE
    env = {
        "OES_ENTERPRISE_ID": sim.enterprise_id,
        "OES_EVENT_POLL_INTERVAL": str(POLL_INTERVAL),
        "OES_MAX_ALLOCATIONS_PER_EVENT": str(CAP),
        "OES_REDELIVER_AFTER": str(REDELIVER_AFTER),
        # A pause or an unpause reaches the watchers at the next parse of the DAG file.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    }
    stack = FullStack(json.dumps(connection), dags_folder=Path(dags), env=env, database="postgres")
    with stack:
        stack.start(dag_ids=(SETTLE_DAG, ALERT_DAG))
        for dag_id in (SETTLE_DAG, ALERT_DAG):
            _set_paused(stack, dag_id, False)

        def watching() -> bool:
            log = stack.component_log(stack.triggerer_name)
            return "statuses=cleared): watching from" in log and "statuses=released): watching from" in log

        stack.wait_for(watching, 180, "the triggerer to watch both assets")
        yield stack


def _set_paused(stack: FullStack, dag_id: str, paused: bool) -> None:
    assert stack.api_json("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})["is_paused"] is paused


def _use_max_active_runs(stack: FullStack, value: int) -> None:
    """Make both DAGs' ``max_active_runs`` ``value`` (``[core] max_active_runs_per_dag`` of a new dag-processor,
    read when it parses the example, which sets none of its own); nothing to do when it already is."""

    def current() -> int:
        return int(stack.api_json("GET", f"/api/v2/dags/{SETTLE_DAG}")["max_active_runs"])

    if current() == value:
        return
    (old,) = [name for name in stack.stack.components if name.startswith("dag-processor")]
    stack.stack.components.pop(old).stop()
    stack.stack.env["AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG"] = str(value)
    stack.stack.start_component(f"dag-processor-mar{value}", ["dag-processor"])
    stack.wait_for(lambda: current() == value, 180, f"max_active_runs={value} on {SETTLE_DAG}", interval=1.0)


def _report(name: str, started: float, figures: str) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n[{name}] {figures}; test took {time.monotonic() - started:.1f} s; load average {load}")


# ---------------------------------------------------------------------- what the stack did


def _wait_feed_poll(stack: FullStack, sim: OESSimulator, after: float) -> None:
    """Wait until the change feed sent a list request after ``after`` (monotonic): it read what changed before."""

    def polled() -> bool:
        return any(path.endswith("/clients/allocations") and at > after for _m, path, _q, at in sim.requests)

    stack.wait_for(polled, 60, "a poll of the shared change feed", interval=0.1)


def _event_consumers(stack: FullStack) -> dict[int, set[str]]:
    """``{asset event id: run ids of the settlement DAG that consumed it}`` (every event of the cleared asset)."""
    rows = metadata_rows(
        stack,
        "SELECT e.id, r.run_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "LEFT JOIN dagrun_asset_event dae ON dae.event_id = e.id "
        "LEFT JOIN dag_run r ON r.id = dae.dag_run_id AND r.dag_id = :settle WHERE a.name = :cleared",
        settle=SETTLE_DAG,
        cleared=CLEARED_ASSET,
    )
    found: dict[int, set[str]] = {}
    for event_id, run_id in rows:
        found.setdefault(int(event_id), set())
        if run_id is not None:
            found[int(event_id)].add(str(run_id))
    return found


def _unfinished_runs(stack: FullStack) -> list[str]:
    rows = metadata_rows(
        stack,
        "SELECT dag_id, run_id, state FROM dag_run WHERE dag_id IN (:settle, :alert) "
        "AND state NOT IN ('success', 'failed')",
        settle=SETTLE_DAG,
        alert=ALERT_DAG,
    )
    return [f"{dag_id}/{run_id} ({state})" for dag_id, run_id, state in rows]


def _wait_acted(
    stack: FullStack, cleared: Iterable[str], released: Iterable[str], timeout: float
) -> dict[str, list[tuple[str, str]]]:
    """Wait until every cleared allocation was settled and every released one alerted on by a successful task,
    every run of both DAGs finished, and no event of the cleared asset came for 3 polls (a re-emission still in
    flight has had its run); return who acted on what (:meth:`EventLedger.acted_on`)."""
    cleared, released = list(cleared), list(released)

    def done() -> dict[str, list[tuple[str, str]]] | None:
        acted = EventLedger.acted_on(stack)
        settled = all(any(d == SETTLE_DAG for d, _r in acted.get(i, ())) for i in cleared)
        alerted = all(any(d == ALERT_DAG for d, _r in acted.get(i, ())) for i in released)
        if not (settled and alerted) or _unfinished_runs(stack):
            return None
        ledger = EventLedger.read(stack)
        newest = max((t.timestamp() for t in ledger.event_times.values()), default=0.0)
        return acted if time.time() - newest > 3 * POLL_INTERVAL else None

    try:
        return dict(stack.wait_for(done, timeout, "every allocation acted on and the stack quiet", interval=1.0))
    except AssertionError as exc:
        acted = EventLedger.acted_on(stack)
        missing = [i for i in cleared + released if i not in acted]
        raise AssertionError(
            f"{exc}\nnot acted on: {missing}; unfinished: {_unfinished_runs(stack)}\n"
            f"--- triggerer ---\n{stack.triggerer.log_tail(80)}"
        ) from None


def _assert_acted_once(
    stack: FullStack, acted: dict[str, list[tuple[str, str]]], cleared: list[str], released: list[str]
) -> tuple[dict[str, str], str]:
    """Every cleared allocation settled by exactly one run (and by no other task, in no other run), carried by
    that run's triggering events, acknowledged by it; released ones settled by none and alerted on once.
    Return ``{cleared id: the run that settled it}`` and a note on repeats (carried by more than one run)."""
    ledger = Ledger(stack)
    carried, _queued, unfinished = ledger.settlements(SETTLE_DAG)
    assert not unfinished, unfinished
    alerted, _q, _u = ledger.settlements(ALERT_DAG)
    by_tasks, repeats_only = ledger.settled_and_repeats()
    assert {i: by_tasks[i] for i in cleared} == dict.fromkeys(cleared, 1), {i: by_tasks[i] for i in cleared}
    duplicates = {i: n for i, n in by_tasks.items() if n != 1}
    assert not duplicates, f"settled more than once (this test or an earlier one): {duplicates}"
    assert not any(by_tasks[i] or carried[i] for i in released), "a released allocation reached a settlement run"
    assert all(carried[i] >= 1 for i in cleared)
    assert {i: len(acted[i]) for i in released} == dict.fromkeys(released, 1)
    assert all(alerted[i] >= 1 for i in released)
    assert not any(alerted[i] for i in cleared)
    acks = acknowledgement_records(stack)
    settled_by: dict[str, str] = {}
    for allocation_id in cleared:
        assert len(acted[allocation_id]) == 1, (allocation_id, acted[allocation_id])
        ((dag_id, run_id),) = acted[allocation_id]
        assert dag_id == SETTLE_DAG
        ack = acks.get((SETTLE_DAG, allocation_id))
        assert ack is not None, f"{allocation_id} was settled by {run_id} but not acknowledged"
        assert ack[0] == run_id, (allocation_id, run_id, ack)
        carrying = {a["id"] for a in ledger.triggering_allocations(SETTLE_DAG, run_id)}
        assert allocation_id in carrying, (allocation_id, run_id)
        settled_by[allocation_id] = run_id
    twice = sum(carried[i] > 1 for i in cleared)
    return settled_by, f"{twice} carried by more than one run, {repeats_only} runs (all tests) took only repeats"


def _runs_by_id(stack: FullStack, dag_id: str = SETTLE_DAG) -> dict[str, dict[str, Any]]:
    return {run["dag_run_id"]: run for run in Ledger(stack).runs(dag_id)}


def _new_cleared(sim: OESSimulator, count: int, **options: Any) -> list[str]:
    return [sim.add_allocation(final_status="reserved", **options) for _ in range(count)]


# ---------------------------------------------------------------------- 1. a long pause


def test_a_20_minute_pause_of_the_settlement_dag_loses_nothing(
    noloss_stack: FullStack, noloss_simulator: OESSimulator
) -> None:
    from airflow_provider_oes.triggers._feed.types import DEFAULT_RETENTION

    started = time.monotonic()
    stack, sim = noloss_stack, noloss_simulator
    _use_max_active_runs(stack, DEFAULT_MAX_ACTIVE_RUNS)
    cleared_triggers = {
        int(t)
        for (t,) in metadata_rows(
            stack,
            "SELECT w.trigger_id FROM asset_watcher w JOIN asset a ON a.id = w.asset_id WHERE a.name = :cleared",
            cleared=CLEARED_ASSET,
        )
    }
    assert cleared_triggers

    _set_paused(stack, SETTLE_DAG, True)
    # Two clear at the moment of the pause, while the watcher still runs (until the next parse unlinks it): their
    # event is stored and waits for the unpause, or is confirmed for an unlinked trigger and never stored.
    at_pause = _new_cleared(sim, 2)
    for allocation_id in at_pause:
        sim.set_status(allocation_id, "cleared")

    def watcher_stopped() -> bool:
        remaining = metadata_rows(stack, "SELECT id FROM trigger")
        log = stack.component_log(stack.triggerer_name)
        gone = not cleared_triggers & {int(t) for (t,) in remaining}
        completed = all(
            any("trigger completed" in line and f"ID {t}" in line for line in log.splitlines())
            for t in cleared_triggers
        )
        return gone and completed

    stack.wait_for(watcher_stopped, 120, "the paused DAG's watcher to stop in the triggerer", interval=1.0)

    # 20 minutes of server time: two clearings every 2 minutes, a release now and then; the alert DAG's watcher
    # keeps the shared feed polling (and forgetting rows older than its 900 s memory).
    cleared, released = list(at_pause), []
    offset = sim.clock_offset
    for step in range(PAUSE_STEPS):
        offset += PAUSE_STEP_SECONDS
        sim.set_clock_offset(offset)
        for allocation_id in _new_cleared(sim, 2):
            sim.set_status(allocation_id, "cleared")
            cleared.append(allocation_id)
        if step % 3 == 1:
            (allocation_id,) = _new_cleared(sim, 1)
            sim.set_status(allocation_id, "released")
            released.append(allocation_id)
        _wait_feed_poll(stack, sim, time.monotonic())
    first_of_pause = api_time(sim.get_record(cleared[len(at_pause)])["updatedAt"])
    assert sim.now().timestamp() - first_of_pause > DEFAULT_RETENTION  # the feed no longer holds it

    # The alert DAG ran meanwhile (the feed was open and watched); the paused DAG settled nothing.
    stack.wait_for(
        lambda: all(i in EventLedger.acted_on(stack) for i in released), 180, "the alerts during the pause", 1.0
    )
    assert not any(i in EventLedger.acted_on(stack) for i in cleared)

    _set_paused(stack, SETTLE_DAG, False)
    unpaused_at = time.time()
    acted = _wait_acted(stack, cleared, released, timeout=300)
    settled_by, repeats = _assert_acted_once(stack, acted, cleared, released)

    runs = _runs_by_id(stack)
    queued = max(api_time(runs[settled_by[i]]["queued_at"]) for i in cleared) - unpaused_at
    succeeded = max(api_time(runs[settled_by[i]]["end_date"]) for i in cleared) - unpaused_at
    consumers = _event_consumers(stack)
    ledger = EventLedger.read(stack)
    events = {e for i in cleared for e in ledger.events.get(i, ())}
    _report(
        "pause",
        started,
        f"{len(cleared)} cleared ({len(at_pause)} at the pause) and {len(released)} released over "
        f"{PAUSE_STEPS * PAUSE_STEP_SECONDS / 60:.0f} min of server time; after the unpause: last allocation's run "
        f"queued {queued:.1f} s, succeeded {succeeded:.1f} s; {len(events)} events, "
        f"{len({r for e in events for r in consumers[e]})} settlement runs; at the pause: "
        f"{sum(ledger.event_times[min(ledger.events[i])].timestamp() < unpaused_at for i in at_pause)} stored while "
        f"paused, {sum(len(ledger.events[i]) > 1 for i in at_pause)} emitted again; {repeats}",
    )


# ---------------------------------------------------------------------- 2. a burst above the cap


def test_a_burst_above_the_cap_goes_out_in_capped_events_each_allocation_acted_on_once(
    noloss_stack: FullStack, noloss_simulator: OESSimulator
) -> None:
    started = time.monotonic()
    stack, sim = noloss_stack, noloss_simulator
    _use_max_active_runs(stack, DEFAULT_MAX_ACTIVE_RUNS)
    burst = sim.add_allocations(BURST)
    flipped_at = time.time()
    sim.schedule_flips(burst, "cleared")  # all at once
    acted = _wait_acted(stack, burst, [], timeout=300)
    settled_by, repeats = _assert_acted_once(stack, acted, burst, [])

    ledger = EventLedger.read(stack)
    sizes = [len(ids) for ids in ledger.event_ids.values()]
    assert max(sizes) <= CAP, sizes  # every event of both assets, this test's and the others'
    events = sorted({e for i in burst for e in ledger.events[i]})
    assert len(events) >= math.ceil(BURST / CAP)
    runs = _runs_by_id(stack)
    carrying = {r for e in events for r in _event_consumers(stack)[e]}
    assert {runs[r]["state"] for r in carrying} == {"success"}  # every run, also those that took a repeat
    done = max(api_time(runs[settled_by[i]]["end_date"]) for i in burst) - flipped_at
    _report(
        "burst",
        started,
        f"{BURST} cleared at once, cap {CAP}: {len(events)} events of {[len(ledger.event_ids[e]) for e in events]} "
        f"allocations, {len(carrying)} settlement runs, all succeeded; last settled {done:.1f} s after the burst; "
        f"{repeats}",
    )


# ---------------------------------------------------------------------- 3. max_active_runs=1, stranded events


def _settle_runs(stack: FullStack) -> dict[str, str]:
    """``{run id: state}`` of every settlement run (metadata DB)."""
    rows = metadata_rows(stack, "SELECT run_id, state FROM dag_run WHERE dag_id = :settle", settle=SETTLE_DAG)
    return {str(run_id): str(state) for run_id, state in rows}


def _event_of(stack: FullStack, allocation_id: str) -> int | None:
    ids = EventLedger.read(stack).events.get(allocation_id)
    return min(ids) if ids else None


def _clear(sim: OESSimulator, cleared_at: dict[str, float]) -> str:
    (allocation_id,) = _new_cleared(sim, 1)
    cleared_at[allocation_id] = time.time()
    sim.set_status(allocation_id, "cleared")
    return allocation_id


def _new_active_run(stack: FullStack, sim: OESSimulator, cleared_at: dict[str, float]) -> str:
    """Wait for a settlement run that becomes active from now on (clearing one allocation to start it when no
    run is active and none would come); return its id."""
    known = set(_settle_runs(stack))
    started = False

    def new_run() -> str | None:
        nonlocal started
        runs = _settle_runs(stack)
        active = sorted(r for r, state in runs.items() if state in ("queued", "running"))
        fresh = [r for r in active if r not in known]
        if fresh:
            return fresh[0]
        if not active and not started:
            _clear(sim, cleared_at)
            started = True
        return None

    return str(stack.wait_for(new_run, 180, "a new settlement run to be active", interval=0.2))


@contextlib.contextmanager
def _no_worker_slot(stack: FullStack) -> Iterator[None]:
    """``default_pool`` without slots: tasks not started yet wait, so an active run stays active (a slow run, as
    one waiting for a worker slot is) for as long as the block lasts; then the slots come back."""
    path = "/api/v2/pools/default_pool?update_mask=slots"
    slots = int(stack.api_json("GET", "/api/v2/pools/default_pool")["slots"])
    stack.api_json("PATCH", path, {"slots": 0})
    try:
        yield
    finally:
        stack.api_json("PATCH", path, {"slots": slots})


def _strand_one(stack: FullStack, sim: OESSimulator, cleared_at: dict[str, float]) -> tuple[str, int, str]:
    """Clear two allocations whose events are both stored while one settlement run is active (held by
    :func:`_no_worker_slot`): the first creates the DAG's queue row, the second comes after it and is stranded
    (apache/airflow#56050). Return the second, its event id and the run that was active."""
    attempts = []
    for _attempt in range(4):
        active = _new_active_run(stack, sim, cleared_at)
        with _no_worker_slot(stack):
            if _settle_runs(stack)[active] not in ("queued", "running"):
                attempts.append(f"{active} ended before its tasks were held")
                continue
            event = None
            for _one in range(2):
                allocation_id = _clear(sim, cleared_at)
                event = stack.wait_for(lambda a=allocation_id: _event_of(stack, a), 60, "an allocation's event", 0.2)
            state = _settle_runs(stack)[active]
        if state in ("queued", "running"):
            return allocation_id, int(event), active
        attempts.append(f"{active} {state} before the second event was stored")
    raise AssertionError(f"no settlement run stayed active for two events: {attempts}")


def _scheduling_figures(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """``(R, S)``: the longest run (queued to end) and the longest time the scheduler took to create a run once it
    could (after its triggering queue row and the previous run's end: ``max_active_runs=1``)."""
    longest = max(api_time(r["end_date"]) - api_time(r["queued_at"]) for r in runs)
    slowest, previous_end = 0.0, -math.inf
    for run in sorted(runs, key=lambda r: api_time(r["queued_at"])):
        could = max(api_time(run["run_after"]), previous_end)
        slowest = max(slowest, api_time(run["queued_at"]) - could)
        previous_end = api_time(run["end_date"])
    return longest, slowest


def test_with_max_active_runs_1_a_stranded_event_waits_no_longer_than_redeliver_after(
    noloss_stack: FullStack, noloss_simulator: OESSimulator
) -> None:
    started = time.monotonic()
    stack, sim = noloss_stack, noloss_simulator
    _use_max_active_runs(stack, 1)
    runs_before = set(_runs_by_id(stack))
    feed_from = time.monotonic()

    # A steady stream: one clearing per poll, faster than the runs go (one at a time, each slower than a poll), so
    # that allocations clear while a run is active.
    cleared_at: dict[str, float] = {}
    for allocation_id in _new_cleared(sim, 8):
        cleared_at[allocation_id] = time.time()
        sim.set_status(allocation_id, "cleared")
        time.sleep(POLL_INTERVAL)  # the stream's pace, not a wait for a result
    stranded, stranded_event, active = _strand_one(stack, sim, cleared_at)
    # Nothing clears from here on: without re-emission the stranded event would wait for the next clearing.
    cleared = list(cleared_at)
    acted = _wait_acted(stack, cleared, [], timeout=300 + 6 * REDELIVER_AFTER)
    settled_by, repeats = _assert_acted_once(stack, acted, cleared, [])

    all_runs = _runs_by_id(stack)
    runs = [run for run_id, run in all_runs.items() if run_id not in runs_before]
    spans = sorted((api_time(r["start_date"]), api_time(r["end_date"])) for r in runs if r["start_date"])
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # one run at a time
    durations = [end - start for start, end in spans]
    while_active = sum(any(a <= cleared_at[i] < b for a, b in spans) for i in cleared)

    # The stranded event was not taken by the run created after it, but together with a later event that only
    # re-emits what had been emitted before: the watcher's re-emission, not a new clearing, delivered it.
    consumers = _event_consumers(stack)
    ledger = EventLedger.read(stack)
    assert len(consumers[stranded_event]) == 1, (stranded_event, consumers[stranded_event])
    (taker,) = consumers[stranded_event]
    assert taker == settled_by[stranded]
    later = [e for e, taken in consumers.items() if taker in taken and e > stranded_event]
    assert later, f"event {stranded_event} of {stranded} was taken by {taker} without a later event"
    emitted_before = {i for e, ids in ledger.event_ids.items() if e <= stranded_event for i in ids}
    assert all(set(ledger.event_ids[e]) <= emitted_before for e in later), "a later event carried a new clearing"
    assert api_time(all_runs[active]["end_date"]) > ledger.event_times[stranded_event].timestamp()

    # Each wait: clearing -> end of the run that settled it. Bound: the allocation's first event is stored within
    # E (measured here: the feed's poll, one event per poll interval, Airflow storing it). It waits for the active
    # run (R, the longest run, queued to end) and, when stranded, also for the run after it and for the next queue
    # row: another event, or at the latest the re-emission (redeliver_after after Airflow confirmed the first
    # event, a poll to find it due, then emitted and stored like a first event: E). The run that takes it is
    # created within S (the scheduler's longest, once it could) and takes R.
    polls = _feed_polls(sim, feed_from)
    poll = max([POLL_INTERVAL, *(b - a for a, b in itertools.pairwise(polls))])
    stored = max(ledger.event_times[min(ledger.events[i])].timestamp() - cleared_at[i] for i in cleared)
    longest, slowest = _scheduling_figures(runs)
    bound = stored + max(2 * longest + slowest, REDELIVER_AFTER + poll + stored) + slowest + longest
    waits = {i: api_time(all_runs[settled_by[i]]["end_date"]) - cleared_at[i] for i in cleared}
    acks = acknowledgement_records(stack)
    taken = sorted(acks[(SETTLE_DAG, i)][1] - cleared_at[i] for i in cleared)
    re_emitted = sorted(i for i in cleared if len(ledger.events[i]) > 1)
    _report(
        "max_active_runs=1",
        started,
        f"{len(cleared)} cleared ({while_active} while a run was active), {len(runs)} runs of "
        f"{statistics.median(durations):.1f} s (median, start to end; poll "
        f"{POLL_INTERVAL:g} s, redeliver_after {REDELIVER_AFTER:g} s); wait clearing -> settled p50 "
        f"{statistics.median(waits.values()):.1f} s, max {max(waits.values()):.1f} s (the stranded one "
        f"{waits[stranded]:.1f} s), clearing -> acknowledged p50 {statistics.median(taken):.1f} s, max "
        f"{max(taken):.1f} s; bound {bound:.1f} s (E {stored:.1f} s, R {longest:.1f} s, S {slowest:.1f} s, "
        f"poll {poll:.1f} s); "
        f"emitted again: {len(re_emitted)}; {repeats}",
    )
    over = {i: round(w, 1) for i, w in waits.items() if w > bound}
    assert not over, f"waited longer than {bound:.1f} s: {over}"


def _feed_polls(sim: OESSimulator, since: float) -> list[float]:
    """Monotonic times of the list requests since ``since`` (the feed's polls and look-back pages)."""
    return sorted(at for _m, path, _q, at in sim.requests if at >= since and path.endswith("/clients/allocations"))
