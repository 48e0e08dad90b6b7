"""The example DAGs under a real scheduler, dag-processor, triggerer and API server (LocalExecutor, PostgreSQL).

Everything is driven through Airflow's public REST API (trigger with ``conf``, task states, XCom, task logs)
and the allocations are flipped in the OES simulator. The stack runs with ``[operators] default_deferrable =
True``, so example 1 and the mapped example wait in the triggerer without any change to the DAG files.

One retry is allowed per task (``[core] default_task_retries = 1``, see ``tests/harness/fullstack.py``) for
the reschedule race apache/airflow#71172; a released allocation is never retried (``AirflowFailException``).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import pytest

from tests.fullstack._support import BATCH_SIZE, use_triggerers
from tests.harness.fullstack import (
    FINISHED_TI_STATES,
    FLEET_DAG,
    GATING_DAG,
    RESCHEDULE_DAG,
    FullStack,
    StackTimeout,
    TaskState,
    expected_batches,
    requests_per_interval,
)

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.fullstack, pytest.mark.integration]

SENSOR = "wait_for_allocation"
LIST_PATH_SUFFIX = "/clients/allocations"
FLEET = 20
FLEET_POLL_INTERVAL = 5.0  # the fleet example's poke_interval, which becomes the trigger's poll interval


def _state(states: dict[str, TaskState], key: str) -> str | None:
    return states[key].state if key in states else None


def _list_requests(sim: OESSimulator, since: float) -> list[tuple[float, list[str]]]:
    """``(time, allocation ids asked for)`` of every batched list request since ``since`` (monotonic)."""
    found = []
    for _method, path, query, at in sim.requests:
        if at >= since and path.endswith(LIST_PATH_SUFFIX):
            ids = parse_qs(query).get("allocationIds", [""])[0]
            found.append((at, [i for i in ids.split(",") if i]))
    return found


def _single_gets(sim: OESSimulator, since: float, ids: set[str]) -> list[str]:
    return [
        path.rsplit("/", 1)[-1] for _m, path, _q, at in sim.requests if at >= since and path.rsplit("/", 1)[-1] in ids
    ]


def test_gating_deferred_then_cleared_settles(fullstack: FullStack, fullstack_simulator: OESSimulator) -> None:
    sim = fullstack_simulator
    allocation_id = sim.add_allocation(
        final_status="reserved", currency="ofcteth", quantity="1234567890123456789012345678901234567890"
    )
    run_id = fullstack.trigger(GATING_DAG, {"allocation_id": allocation_id})

    states = fullstack.wait_states(
        GATING_DAG, run_id, lambda s: _state(s, SENSOR) == "deferred", "the sensor to be deferred"
    )
    assert _state(states, "settle") is None  # nothing downstream ran while the allocation is reserved
    # The triggerer polls it (batched list endpoint) while deferred; still nothing succeeds.
    seen_at = time.monotonic()
    fullstack.wait_for(
        lambda: any(allocation_id in ids for _t, ids in _list_requests(sim, seen_at)), 60, "the triggerer to poll"
    )
    assert _state(fullstack.task_states(GATING_DAG, run_id), SENSOR) == "deferred"

    sim.set_status(allocation_id, "cleared")

    final = fullstack.wait_run(GATING_DAG, run_id)
    assert final == "success", fullstack.describe(GATING_DAG, run_id)
    states = fullstack.task_states(GATING_DAG, run_id)
    assert {k: v.state for k, v in states.items()} == {SENSOR: "success", "settle": "success"}
    gated = fullstack.xcom(GATING_DAG, run_id, SENSOR)
    assert gated["id"] == allocation_id
    assert gated["status"] == "cleared"
    assert gated["amount"] == {"currency": "ofcteth", "quantity": "1234567890123456789012345678901234567890"}
    assert fullstack.xcom(GATING_DAG, run_id, "settle") == {
        "allocation_id": allocation_id,
        "status": "cleared",
        "currency": "ofcteth",
        "quantity": "1234567890123456789012345678901234567890",
    }


def test_gating_deferred_then_released_fails_without_settling(
    fullstack: FullStack, fullstack_simulator: OESSimulator
) -> None:
    sim = fullstack_simulator
    allocation_id = sim.add_allocation(final_status="reserved")
    run_id = fullstack.trigger(GATING_DAG, {"allocation_id": allocation_id})
    fullstack.wait_states(GATING_DAG, run_id, lambda s: _state(s, SENSOR) == "deferred", "the sensor to be deferred")

    sim.set_status(allocation_id, "released", reason="partner rejected the allocation")

    assert fullstack.wait_run(GATING_DAG, run_id) == "failed"
    states = fullstack.task_states(GATING_DAG, run_id)
    assert {k: v.state for k, v in states.items()} == {SENSOR: "failed", "settle": "upstream_failed"}
    # Released is final: AllocationReleasedError fails the task without using the retry.
    assert states[SENSOR].try_number == 1
    assert fullstack.xcom(GATING_DAG, run_id, SENSOR) is None
    assert fullstack.xcom(GATING_DAG, run_id, "settle") is None
    log = fullstack.task_log(GATING_DAG, run_id, SENSOR, try_number=1)
    assert "AllocationReleasedError" in log
    assert "partner rejected the allocation" in log
    assert allocation_id in log
    assert sim.token not in log


def test_reschedule_mode_up_for_reschedule_then_cleared(
    fullstack: FullStack, fullstack_simulator: OESSimulator
) -> None:
    sim = fullstack_simulator
    allocation_id = sim.add_allocation(final_status="reserved")
    run_id = fullstack.trigger(RESCHEDULE_DAG, {"allocation_id": allocation_id})

    fullstack.wait_states(
        RESCHEDULE_DAG, run_id, lambda s: _state(s, SENSOR) == "up_for_reschedule", "the sensor to be rescheduled"
    )
    # Between pokes the sensor holds no worker slot and has pushed nothing.
    assert fullstack.xcom(RESCHEDULE_DAG, run_id, SENSOR) is None
    assert _state(fullstack.task_states(RESCHEDULE_DAG, run_id), "settle") is None

    # Flip at once: every poke that ends in a reschedule is one more chance for the race of
    # apache/airflow#71172 (the scheduler fails a sensor whose previous poke the executor reports late), and
    # the stack allows one retry for it.
    sim.set_status(allocation_id, "cleared")

    final = fullstack.wait_run(RESCHEDULE_DAG, run_id)
    assert final == "success", fullstack.describe(RESCHEDULE_DAG, run_id)
    states = fullstack.task_states(RESCHEDULE_DAG, run_id)
    assert {k: v.state for k, v in states.items()} == {
        SENSOR: "success",
        "settle": "success",
        "report_release": "skipped",
    }
    # At least one poke saw it reserved (then the reschedule) and a later one saw it cleared.
    assert len(_single_gets(sim, 0.0, {allocation_id})) >= 2
    print(f"\n[fullstack] reschedule sensor finished on try {states[SENSOR].try_number} (2 means the #71172 retry)")
    gated = fullstack.xcom(RESCHEDULE_DAG, run_id, SENSOR)
    assert gated["id"] == allocation_id
    assert gated["status"] == "cleared"


def test_triggerer_killed_with_twenty_deferred_sensors(fullstack: FullStack, fullstack_simulator: OESSimulator) -> None:
    sim = fullstack_simulator
    use_triggerers(fullstack, 1)  # the one that is killed holds all 20
    ids = [sim.add_allocation(final_status="reserved", quantity=str(1000 + i)) for i in range(FLEET)]
    to_clear, to_release, stay_reserved = ids[:7], ids[7:14], ids[14:]
    run_id = fullstack.trigger(FLEET_DAG, {"allocation_ids": ids})
    sensors = [f"{SENSOR}[{i}]" for i in range(FLEET)]

    fullstack.wait_states(
        FLEET_DAG,
        run_id,
        lambda s: all(_state(s, key) == "deferred" for key in sensors),
        f"all {FLEET} mapped sensors to be deferred",
        timeout=240,
    )

    # --- the batched poller at work: wait until one sweep covers all 20, then count requests per interval.
    def full_sweep() -> bool:
        recent = _list_requests(sim, time.monotonic() - 2.5 * FLEET_POLL_INTERVAL)
        return {i for _t, batch in recent for i in batch} == set(ids)

    fullstack.wait_for(full_sweep, 60, "one poller sweep covering all 20 allocations")
    window_start = time.monotonic()
    time.sleep(3 * FLEET_POLL_INTERVAL)
    window_end = time.monotonic()
    in_window = [(t, b) for t, b in _list_requests(sim, window_start) if t < window_end]
    per_interval = requests_per_interval([t for t, _b in in_window], window_start, window_end, FLEET_POLL_INTERVAL)
    batches = expected_batches(FLEET, BATCH_SIZE)
    # Requests of one sweep go out together; sweeps are a poll interval apart.
    sweeps: list[list[tuple[float, list[str]]]] = []
    for request in in_window:
        if sweeps and request[0] - sweeps[-1][-1][0] < FLEET_POLL_INTERVAL / 2:
            sweeps[-1].append(request)
        else:
            sweeps.append([request])
    complete = [sweep for sweep in sweeps if {i for _t, b in sweep for i in b} == set(ids)]
    print(
        f"\n[fullstack] {len(in_window)} list requests in {window_end - window_start:.1f} s: "
        f"{per_interval:.2f} per {FLEET_POLL_INTERVAL:.0f} s poll interval (ceil({FLEET}/{BATCH_SIZE}) = {batches}); "
        f"requests per sweep: {[len(sweep) for sweep in sweeps]}; "
        f"single GETs: {len(_single_gets(sim, window_start, set(ids)))}"
    )
    assert len(complete) >= 2, sweeps
    for sweep in complete:
        assert len(sweep) == batches, sweep  # one list request per batch of 8, never one per sensor
    assert all(len(batch) <= BATCH_SIZE for _t, batch in in_window)
    assert _single_gets(sim, window_start, set(ids)) == []  # every allocation was answered by the list call
    starts = [sweep[0][0] for sweep in complete]
    assert all(b - a >= 0.8 * FLEET_POLL_INTERVAL for a, b in itertools.pairwise(starts)), starts

    # --- SIGKILL the triggerer with 20 triggers in it; change the allocations while nobody watches.
    old = fullstack.triggerer_name
    killed_at = time.monotonic()
    fullstack.kill_triggerer()
    for allocation_id in to_clear:
        sim.set_status(allocation_id, "cleared")
    for allocation_id in to_release:
        sim.set_status(allocation_id, "released", reason="partner rejected the allocation")
    time.sleep(2)
    states = fullstack.task_states(FLEET_DAG, run_id)
    assert all(_state(states, key) == "deferred" for key in sensors), "a sensor moved with no triggerer running"
    assert _list_requests(sim, killed_at + 1) == []  # the killed triggerer polls no more

    fullstack.start_triggerer()
    new = fullstack.triggerer_name
    index = {allocation_id: i for i, allocation_id in enumerate(ids)}

    def settled(s: dict[str, TaskState]) -> bool:
        return all(_state(s, sensors[index[a]]) in FINISHED_TI_STATES for a in to_clear + to_release)

    states = fullstack.wait_states(FLEET_DAG, run_id, settled, "the new triggerer to fire 14 events", timeout=180)
    takeover_seconds = time.monotonic() - killed_at
    for allocation_id in to_clear:
        assert _state(states, sensors[index[allocation_id]]) == "success", allocation_id
    for allocation_id in to_release:
        assert _state(states, sensors[index[allocation_id]]) == "failed", allocation_id
    # Still reserved: polled by the new triggerer, and none of them succeeded.
    polled_from = time.monotonic()
    fullstack.wait_for(
        lambda: sum(1 for _t, b in _list_requests(sim, polled_from) if set(stay_reserved) <= set(b)) >= 2,
        60,
        "two sweeps of the new triggerer over the reserved allocations",
    )
    states = fullstack.task_states(FLEET_DAG, run_id)
    for allocation_id in stay_reserved:
        assert _state(states, sensors[index[allocation_id]]) == "deferred", allocation_id

    for allocation_id in stay_reserved:
        sim.set_status(allocation_id, "cleared")
    final = fullstack.wait_run(FLEET_DAG, run_id, timeout=180)
    assert final == "failed", fullstack.describe(FLEET_DAG, run_id)  # the 7 released sensors failed

    states = fullstack.task_states(FLEET_DAG, run_id)
    for i, allocation_id in enumerate(ids):
        expected = "failed" if allocation_id in to_release else "success"
        assert states[sensors[i]].state == expected, (i, allocation_id, states[sensors[i]])
        value = fullstack.xcom(FLEET_DAG, run_id, SENSOR, map_index=i)
        if expected == "success":
            assert value["id"] == allocation_id
            assert value["status"] == "cleared"
            assert value["amount"]["quantity"] == str(1000 + i)
        else:
            assert value is None
            assert states[sensors[i]].try_number == 1  # released: never retried
    assert states["settle_cleared"].state == "upstream_failed"  # runs only when all cleared

    released_log = fullstack.task_log(FLEET_DAG, run_id, SENSOR, try_number=1, map_index=index[to_release[0]])
    assert "partner rejected the allocation" in released_log

    # --- what the triggerers wrote. Each triggerer job writes its own file per task instance
    # (``<ti log>.trigger.<triggerer job id>.log``): the killed one started all 20 and fired nothing, the new
    # one started all 20 again and fired all 20 events (14 at once, 6 after the last flip).
    def read_trigger_logs() -> dict[str, dict[str, list[str]]]:
        found: dict[str, dict[str, list[str]]] = {}
        for path in fullstack.stack.home.glob(f"logs/dag_id={FLEET_DAG}/**/*.trigger.*.log"):
            if run_id not in str(path):
                continue
            job = path.name.rsplit(".trigger.", 1)[1].removesuffix(".log")
            lines = found.setdefault(job, {"starts": [], "fired": []})
            for line in path.read_text(errors="replace").splitlines():
                if '"trigger ' in line and ' starting"' in line:
                    lines["starts"].append(line)
                elif "Trigger fired event" in line:
                    lines["fired"].append(line)
        return found

    # The triggerer writes these files after the events went out: on a loaded machine the last lines can
    # land a few seconds after the run finished, so wait for them (the assertions below still decide).
    by_job = read_trigger_logs()
    with contextlib.suppress(StackTimeout):
        by_job = fullstack.wait_for(
            lambda: (found := read_trigger_logs()) and sum(len(v["fired"]) for v in found.values()) >= FLEET and found,
            30,
            "the trigger log files to show every event",
        )
    print(f"[fullstack] new triggerer fired the 14 events {takeover_seconds:.1f} s after the SIGKILL")
    print(f"[fullstack] old triggerer ({old}) log tail:\n{fullstack.component_log(old)[-600:]}")
    print(f"[fullstack] new triggerer ({new}) log tail:\n{fullstack.component_log(new)[-600:]}")
    for job, lines in sorted(by_job.items(), key=lambda item: int(item[0])):
        print(f"[fullstack] triggerer job {job}: {len(lines['starts'])} trigger starts, {len(lines['fired'])} events")
        for line in lines["starts"][:1] + lines["fired"][:1]:
            print(f"    {line[:400]}")
    assert "Starting the triggerer" in fullstack.component_log(new)
    assert len(by_job) == 2, sorted(by_job)
    old_job, new_job = sorted(by_job, key=int)
    assert len(by_job[old_job]["starts"]) == FLEET
    assert by_job[old_job]["fired"] == []
    assert len(by_job[new_job]["starts"]) == FLEET
    assert len(by_job[new_job]["fired"]) == FLEET
    released_events = [line for line in by_job[new_job]["fired"] if "'status': 'released'" in line]
    assert len(released_events) == len(to_release)
