"""Two triggerers share a mapped fleet of deferred sensors; the one holding triggers is SIGKILLed mid-flight.

Production runs several triggerers on PostgreSQL. Each claims unassigned triggers (``SKIP LOCKED``), and a
triggerer whose heartbeat is older than ``[triggerer] triggerer_health_check_threshold`` (5 s in this stack,
30 s by default) loses its triggers to the others. This test kills one triggerer without warning while the
allocations keep changing (before the kill, while nobody watches the dead one's triggers, and after the
survivor took them over) and checks every sensor through the REST API: cleared ones succeed with their own
allocation in XCom, released ones fail on their first try, the rest stay deferred and are still polled.

It prints the takeover times: from the SIGKILL to the first adopted trigger in the survivor, to all adopted,
and to every pending event delivered.

The same stack and the same kill also carry the event-driven example (``example_oes_event_driven_settlement``,
an ``AssetWatcher`` with an ``AllocationEventTrigger`` per final status): its two watchers run in the triggerer
that is killed, the fleet's allocations are what becomes final before, during and after the kill, and the
survivor adopts the watchers after the threshold. Every allocation that became final must be settled (or
alerted on) by exactly one DAG run, counted per allocation id from what the runs' tasks returned in the
metadata DB: none missed, none doubled across the takeover. Each is carried by one asset event, except the
ones the victim handed to Airflow just before the kill and never heard were stored: the survivor names them
and emits them again, and the example's ``new_allocations`` keeps the repeat's run from settling them twice.
It prints the watchers' takeover times too: to the survivor holding them, running them (state read back),
and storing their first event.
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import pytest

from tests.fullstack._support import (
    ALERT_DAG,
    CLEARED_ASSET,
    RELEASED_ASSET,
    SETTLE_DAG,
    EventLedger,
    use_triggerers,
    watcher_holders,
)
from tests.harness.fullstack import FINISHED_TI_STATES, FLEET_DAG, FullStack, TaskState

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.fullstack, pytest.mark.integration]

SENSOR = "wait_for_allocation"
FLEET = 40
THRESHOLD = 5.0  # [triggerer] triggerer_health_check_threshold in tests/harness/fullstack.py
FLIP_SPACING = 0.2  # seconds between two flips: the allocations keep changing across the kill
PLANS = ("cleared", "released", "reserved")
PHASES = ("before the kill", "while the victim is dead", "after the takeover")
WATCHERS = {CLEARED_ASSET: "cleared", RELEASED_ASSET: "released"}
_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")


def _state(states: dict[str, TaskState], key: str) -> str | None:
    return states[key].state if key in states else None


def _polled_ids(sim: OESSimulator, since: float) -> list[set[str]]:
    """Allocation ids asked for by each list request since ``since`` (monotonic)."""
    found = []
    for _method, path, query, at in sim.requests:
        if at >= since and path.endswith("/clients/allocations"):
            found.append({i for i in parse_qs(query).get("allocationIds", [""])[0].split(",") if i})
    return found


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _trigger_started(fullstack: FullStack, run_id: str, map_index: int, job_id: int) -> datetime | None:
    """When triggerer job ``job_id`` started the trigger of one mapped sensor (from its trigger log file)."""
    pattern = f"logs/dag_id={FLEET_DAG}/run_id={run_id}/task_id={SENSOR}/map_index={map_index}/*.trigger.{job_id}.log"
    for path in fullstack.stack.home.glob(pattern):
        for line in path.read_text(errors="replace").splitlines():
            if " starting" in line and '"timestamp"' in line:
                return _parse_time(json.loads(line)["timestamp"])
    return None


def _log_time(fullstack: FullStack, name: str, text: str) -> datetime | None:
    """When triggerer ``name`` first logged a line containing ``text`` (the line's own timestamp)."""
    for line in fullstack.component_log(name).splitlines():
        if text in line and (found := _LOG_TIME.search(line)):
            return _parse_time(found.group(1)).astimezone(timezone.utc)
    return None


def _log_lines(fullstack: FullStack, name: str, text: str) -> list[str]:
    """The lines of triggerer ``name``'s log that contain ``text``."""
    return [line for line in fullstack.component_log(name).splitlines() if text in line]


def _watch_with_one_triggerer(fullstack: FullStack) -> tuple[str, int]:
    """Unpause the event-driven example while one triggerer runs: it takes both watchers. Return it, its job."""
    (first,) = use_triggerers(fullstack, 1)
    first_job = fullstack.triggerer_job_id(first)
    for dag_id in (SETTLE_DAG, ALERT_DAG):
        assert fullstack.api_json("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})["is_paused"] is False

    def watching() -> bool:
        held = watcher_holders(fullstack)
        log = fullstack.component_log(first)
        return all(
            held.get(asset) == first_job and re.search(rf"statuses={status}\): (watching from|resuming)", log)
            for asset, status in WATCHERS.items()
        )

    fullstack.wait_for(watching, 120, f"{first} to run both watchers of the event-driven example")
    return first, first_job


def test_two_triggerers_one_sigkilled_survivor_adopts_and_every_sensor_ends_right(
    fullstack: FullStack, fullstack_simulator: OESSimulator
) -> None:
    sim = fullstack_simulator
    first, first_job = _watch_with_one_triggerer(fullstack)
    first, second = use_triggerers(fullstack, 2)
    jobs = {first_job: first, fullstack.triggerer_job_id(second): second}

    ids = [sim.add_allocation(final_status="reserved", quantity=str(7000 + i)) for i in range(FLEET)]
    sensors = [f"{SENSOR}[{i}]" for i in range(FLEET)]
    run_id = fullstack.trigger(FLEET_DAG, {"allocation_ids": ids})

    # --- every sensor deferred, held by one of the two triggerers, and polled.
    def all_held() -> dict[str, int | None] | None:
        holders = fullstack.trigger_holders(FLEET_DAG, run_id)
        states = fullstack.task_states(FLEET_DAG, run_id)
        ready = all(_state(states, k) == "deferred" and holders.get(k) in jobs for k in sensors)
        return holders if ready else None

    holders = fullstack.wait_for(all_held, 240, f"all {FLEET} sensors deferred and held by a triggerer")
    held: dict[int, list[int]] = {job: [i for i, k in enumerate(sensors) if holders[k] == job] for job in jobs}
    # The victim is the triggerer running the watchers; it must hold sensors too (at most 10 claimed per loop).
    victim_job = first_job
    survivor_job = next(job for job in jobs if job != victim_job)
    victim, survivor = jobs[victim_job], jobs[survivor_job]
    print(f"\n[failover] triggers per triggerer before the kill: { {jobs[j]: len(v) for j, v in held.items()} }")
    assert held[victim_job], (
        f"the triggerer running the watchers holds no sensor: { {jobs[j]: v for j, v in held.items()} }"
    )
    assert set(watcher_holders(fullstack).values()) == {victim_job}, "the watchers moved before the kill"
    since = time.monotonic()
    fullstack.wait_for(
        lambda: set().union(*_polled_ids(sim, since) or [set()]) >= set(ids), 60, "a sweep over all allocations"
    )

    # --- the plan: each triggerer's sensors get every outcome in every phase (round robin, shuffled).
    rng = random.Random(12)
    plan: dict[int, tuple[str, int]] = {}  # map index -> (outcome, phase index)
    for indexes in held.values():
        shuffled = rng.sample(indexes, len(indexes))
        for n, i in enumerate(shuffled):
            plan[i] = (PLANS[n % 3], (n // 3) % 3)
    flips = {
        phase: [i for i in range(FLEET) if plan[i][1] == phase and plan[i][0] != "reserved"] for phase in (0, 1, 2)
    }

    def flip(phase: int) -> None:
        for i in flips[phase]:
            if plan[i][0] == "cleared":
                sim.set_status(ids[i], "cleared")
            else:
                sim.set_status(ids[i], "released", reason=f"partner rejected allocation {i}")
            time.sleep(FLIP_SPACING)

    # --- flip, SIGKILL the victim at once, keep flipping while nobody runs its triggers.
    flip(0)
    victim_heartbeat = _parse_time(fullstack.triggerer_heartbeats()[victim_job])
    killed_wall = datetime.now(timezone.utc)
    killed_at = time.monotonic()
    fullstack.kill_triggerer(victim)
    flip(1)
    orphaned_flipped = [i for i in held[victim_job] if plan[i][1] == 1 and plan[i][0] != "reserved"]
    if time.monotonic() < killed_at + THRESHOLD - 0.5:
        states = fullstack.task_states(FLEET_DAG, run_id)
        moved = [sensors[i] for i in orphaned_flipped if _state(states, sensors[i]) != "deferred"]
        assert moved == [], f"sensors of the dead triggerer moved before anyone adopted them: {moved}"

    # --- the takeover: the survivor adopts every trigger the victim still held.
    first_adopted: float | None = None
    watchers_adopted: float | None = None

    def adopted() -> float | None:
        nonlocal first_adopted, watchers_adopted
        now = time.monotonic()
        if watchers_adopted is None and set(watcher_holders(fullstack).values()) == {survivor_job}:
            watchers_adopted = now
        holders = fullstack.trigger_holders(FLEET_DAG, run_id)
        left = {k: h for k, h in holders.items() if k in {sensors[i] for i in held[victim_job]}}
        if first_adopted is None and survivor_job in left.values():
            first_adopted = now
        return now if left and all(h == survivor_job for h in left.values()) else None

    all_adopted = fullstack.wait_for(adopted, 120, f"{survivor} to adopt the triggers of {victim}", interval=0.25)
    assert first_adopted is not None

    def watchers_moved() -> float | None:
        nonlocal watchers_adopted
        if watchers_adopted is None and set(watcher_holders(fullstack).values()) == {survivor_job}:
            watchers_adopted = time.monotonic()
        return watchers_adopted

    fullstack.wait_for(watchers_moved, 120, f"{survivor} to adopt both watchers of {victim}", interval=0.25)
    flip(2)

    # --- every flipped sensor ends; the pending ones of the victim are delivered by the survivor.
    victim_pending = {sensors[i] for i in held[victim_job] if plan[i][0] != "reserved" and plan[i][1] < 2}
    delivered_at: float | None = None

    def finished(states: dict[str, TaskState]) -> bool:
        nonlocal delivered_at
        if delivered_at is None and all(_state(states, k) != "deferred" for k in victim_pending):
            delivered_at = time.monotonic()
        return all(_state(states, sensors[i]) in FINISHED_TI_STATES for i in range(FLEET) if plan[i][0] != "reserved")

    states = fullstack.wait_states(FLEET_DAG, run_id, finished, "every flipped sensor to finish", timeout=180)
    finished_at = time.monotonic()
    assert delivered_at is not None
    for i, key in enumerate(sensors):
        outcome, phase = plan[i]
        where = f"{key} ({outcome} {PHASES[phase]}, held by {jobs.get(holders[key] or -1)})"
        if outcome == "cleared":
            assert states[key].state == "success", where
            value = fullstack.xcom(FLEET_DAG, run_id, SENSOR, map_index=i)
            assert value["id"] == ids[i], where
            assert value["status"] == "cleared", where
            assert value["amount"]["quantity"] == str(7000 + i), where
        elif outcome == "released":
            assert states[key].state == "failed", where
            assert states[key].try_number == 1, where  # released fails at once, never retried
            assert fullstack.xcom(FLEET_DAG, run_id, SENSOR, map_index=i) is None, where

    # --- the still-reserved ones stay deferred through two more sweeps of the survivor, and are its own.
    reserved = [i for i in range(FLEET) if plan[i][0] == "reserved"]
    polled_from = time.monotonic()

    def polled_twice() -> bool:
        batches = _polled_ids(sim, polled_from)
        return all(sum(1 for batch in batches if ids[i] in batch) >= 2 for i in reserved)

    fullstack.wait_for(polled_twice, 30, "two sweeps of the survivor over the still-reserved allocations")
    states = fullstack.task_states(FLEET_DAG, run_id)
    holders_now = fullstack.trigger_holders(FLEET_DAG, run_id)
    for i in reserved:
        assert _state(states, sensors[i]) == "deferred", sensors[i]
        assert holders_now[sensors[i]] == survivor_job, sensors[i]
    assert fullstack.xcom(FLEET_DAG, run_id, SENSOR, map_index=reserved[0]) is None

    # When the survivor really started each adopted trigger: the first line of its trigger log for that task.
    adopted_starts = sorted(
        started
        for i in held[victim_job]
        if (started := _trigger_started(fullstack, run_id, i, survivor_job)) is not None
    )
    assert adopted_starts, "no trigger log of the survivor for an adopted task"
    print(
        f"[failover] victim's last heartbeat {(killed_wall - victim_heartbeat).total_seconds():.1f} s before the kill; "
        f"first adopted trigger started in the survivor {(adopted_starts[0] - killed_wall).total_seconds():.1f} s "
        f"after the kill, last {(adopted_starts[-1] - killed_wall).total_seconds():.1f} s"
    )
    print(
        f"[failover] victim {victim} held {len(held[victim_job])} triggers, survivor {survivor} "
        f"{len(held[survivor_job])}; health-check threshold {THRESHOLD:.0f} s\n"
        f"[failover] takeover after the SIGKILL: first adopted trigger {first_adopted - killed_at:.1f} s, "
        f"all adopted {all_adopted - killed_at:.1f} s, every pending event delivered {delivered_at - killed_at:.1f} s, "
        f"every flipped sensor finished {finished_at - killed_at:.1f} s"
    )

    # --- the rest clear (the watchers' "after" round), the run ends (failed: 9+ released).
    for i in reserved:
        sim.set_status(ids[i], "cleared")
    assert fullstack.wait_run(FLEET_DAG, run_id, timeout=120) == "failed"
    states = fullstack.task_states(FLEET_DAG, run_id)
    assert all(states[sensors[i]].state == "success" for i in reserved)
    assert fullstack.triggerer_names == [survivor]

    # --- event-driven: every allocation that became final is in exactly one asset event and one DAG run.
    cleared = {ids[i] for i in range(FLEET) if plan[i][0] != "released"}
    released = {ids[i] for i in range(FLEET) if plan[i][0] == "released"}
    _check_every_final_allocation_settled_once(fullstack, sim, cleared, released, survivor, killed_wall)
    for dag_id in (SETTLE_DAG, ALERT_DAG):  # leave the stack as found: nothing watching
        assert fullstack.api_json("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})["is_paused"] is True
    assert watchers_adopted is not None
    running = _log_time(fullstack, survivor, "statuses=cleared): resuming from stored state")
    assert running is not None, "the survivor did not resume the cleared watcher from its stored state"
    first_event = min(
        (stamp for stamp in EventLedger.read(fullstack).event_times.values() if stamp > killed_wall), default=None
    )
    assert first_event is not None
    print(
        f"[failover] event watchers: adopted by the survivor {watchers_adopted - killed_at:.1f} s after the kill, "
        f"running it (state read back) {(running - killed_wall).total_seconds():.1f} s, first asset event stored "
        f"after the takeover {(first_event - killed_wall).total_seconds():.1f} s"
    )


def _check_every_final_allocation_settled_once(
    fullstack: FullStack,
    sim: OESSimulator,
    cleared: set[str],
    released: set[str],
    survivor: str,
    killed_wall: datetime,
) -> None:
    """Wait until every final allocation reached a finished run, then count events and runs per allocation id."""

    def settled() -> EventLedger | None:
        ledger = EventLedger.read(fullstack)
        done = all(i in ledger.runs for i in cleared | released)
        return ledger if done and not ledger.unfinished else None

    try:
        fullstack.wait_for(settled, 240, "every final allocation to reach a finished DAG run", interval=1.0)
    except AssertionError:
        ledger = EventLedger.read(fullstack)
        missing = sorted(i for i in cleared | released if i not in ledger.runs)
        raise AssertionError(
            f"not settled: {missing}; unfinished: {ledger.unfinished}\n--- {survivor} ---\n"
            f"{fullstack.triggerer.log_tail(60)}"
        ) from None
    # Two more polls of the survivor's feed: a late duplicate would be emitted by now.
    since = time.monotonic()
    fullstack.wait_for(
        lambda: sum(1 for _m, path, query, at in sim.requests if at >= since and "statuses=" in query) >= 2,
        60,
        "two more polls of the change feed",
    )
    fullstack.wait_for(lambda: not EventLedger.read(fullstack).unfinished, 120, "every DAG run to finish")
    ledger = EventLedger.read(fullstack)

    # Settled or alerted on by exactly one run each (counted from what the tasks returned), none missed.
    acted = EventLedger.acted_on(fullstack)
    per_run = {i: len(runs) for i, runs in acted.items()}
    where = f"\n--- {survivor} ---\n{fullstack.triggerer.log_tail(80)}"
    assert per_run == dict.fromkeys(cleared | released, 1), f"runs that acted on each allocation: {per_run}{where}"
    assert all(acted[i][0][0] == SETTLE_DAG for i in cleared)
    assert all(acted[i][0][0] == ALERT_DAG for i in released)
    assert {i: ledger.asset_of[i] for i in cleared} == {i: {CLEARED_ASSET} for i in cleared}
    assert {i: ledger.asset_of[i] for i in released} == {i: {RELEASED_ASSET} for i in released}
    assert ledger.failed == []
    # One asset event per allocation, except the ones the victim handed over just before the kill, whose storage
    # it never learnt of: the survivor names them and emits them again (documented; settled once all the same).
    per_event = {i: len(events) for i, events in ledger.events.items()}
    assert set(per_event) == cleared | released, f"asset events per allocation: {per_event}"
    repeated = {i for i, n in per_event.items() if n > 1}
    named = _log_lines(fullstack, survivor, "emitting them again (at least once)")
    assert all(n <= 2 for n in per_event.values()), per_event
    assert all(any(i in line for line in named) for i in repeated), f"repeated without warning: {repeated}{where}"
    settle_runs = {run for i in cleared for run in ledger.runs[i]}
    stored_after_kill = [i for i, events in ledger.events.items() if ledger.event_times[events[0]] > killed_wall]
    print(
        f"\n[failover] event-driven: {len(cleared)} cleared allocations settled by {len(settle_runs)} runs, "
        f"{len(released)} released alerted by {len({r for i in released for r in ledger.runs[i]})} runs; "
        f"runs that acted per allocation {sorted(set(per_run.values()))}; asset events per allocation "
        f"{sorted(set(per_event.values()))} ({len(repeated)} emitted again by the survivor: first event stored, "
        f"kill before the acknowledgement); {len(stored_after_kill)} first stored after the kill, "
        f"{len(ledger.event_ids)} asset events in all"
    )
