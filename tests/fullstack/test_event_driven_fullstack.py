"""Event-driven settlement under a real dag-processor, scheduler, triggerer and API server (LocalExecutor, SQLite).

The stack runs ``example_dags/example_oes_event_driven_settlement.py`` alone, unpaused. The simulator makes
allocations final at random moments (some within the same poll); every cleared allocation must be settled by
exactly one DAG run, released ones by none (they go to the alert DAG). Then the triggerer is SIGKILLed while
more allocations clear, a new triggerer starts, and the count must still be exactly one per allocation.

Settlements are counted per allocation id from each run's triggering asset events, through the REST API
(``/upstreamAssetEvents``), and checked against what the mapped ``settle`` tasks returned. The event latency
(from the flip, the record's ``updatedAt``, to the DAG run being queued) is printed (p50/max).
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fullstack._support import ALERT_DAG, SETTLE_DAG, Ledger, acknowledgements, tasks_have_asset_state_store
from tests.fullstack._support import EVENT_POLL_INTERVAL as POLL_INTERVAL
from tests.fullstack._support import api_time as _parse
from tests.harness.fullstack import EXAMPLE_DAGS, FullStack, oes_connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.fullstack, pytest.mark.integration]


@pytest.fixture(scope="module")
def event_simulator() -> Iterator[OESSimulator]:
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        yield sim


@pytest.fixture(scope="module")
def event_stack(event_simulator: OESSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    """A stack whose DAGs folder holds only the event-driven example (a symlink to the real file)."""
    sim = event_simulator
    dags = tmp_path_factory.mktemp("event-dags")
    (dags / "example_oes_event_driven_settlement.py").symlink_to(
        EXAMPLE_DAGS / "example_oes_event_driven_settlement.py"
    )
    env = {
        "OES_ENTERPRISE_ID": sim.enterprise_id,
        "OES_EVENT_POLL_INTERVAL": str(POLL_INTERVAL),
        # Parse the DAG file often enough that the watchers register quickly after start.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    }
    stack = FullStack(oes_connection_json(sim.url, sim.token, sim.enterprise_id), dags_folder=Path(dags), env=env)
    with stack:
        stack.start(dag_ids=(SETTLE_DAG, ALERT_DAG))
        yield stack


def _flip_at_random(sim: OESSimulator, plan: list[tuple[str, str]], span: float, rng: random.Random) -> None:
    """Flip each ``(id, status)`` at a random moment within ``span`` seconds; pairs share a moment."""
    moments = sorted(rng.uniform(0, span) for _ in range(len(plan)))
    # Some flips land within the same poll: make every other pair simultaneous.
    for i in range(1, len(moments), 3):
        moments[i] = moments[i - 1]
    start = time.monotonic()
    for (allocation_id, status), moment in zip(plan, moments, strict=True):
        delay = start + moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sim.set_status(allocation_id, status)


def _wait_settled(
    stack: FullStack, ledger: Ledger, cleared: list[str], released: list[str], timeout: float
) -> tuple[Counter[str], dict[str, float]]:
    def done() -> tuple[Counter[str], dict[str, float]] | None:
        counts, queued, unfinished = ledger.settlements(SETTLE_DAG)
        alerts, _q, alert_unfinished = ledger.settlements(ALERT_DAG)
        if unfinished or alert_unfinished:
            return None
        if all(counts[i] >= 1 for i in cleared) and all(alerts[i] >= 1 for i in released):
            return counts, queued
        return None

    try:
        return stack.wait_for(done, timeout, "every final allocation to reach a finished DAG run", interval=1.0)
    except AssertionError:
        counts, _queued, unfinished = ledger.settlements(SETTLE_DAG)
        raise AssertionError(
            f"settled: {dict(counts)}; waiting for {[i for i in cleared if not counts[i]]}; unfinished {unfinished}\n"
            f"--- triggerer ---\n{stack.triggerer.log_tail(60)}"
        ) from None


def test_every_cleared_allocation_settled_exactly_once_across_a_triggerer_kill(
    event_stack: FullStack, event_simulator: OESSimulator
) -> None:
    stack, sim = event_stack, event_simulator
    rng = random.Random(16)
    ledger = Ledger(stack)

    # Both watchers are running once each logged the first poll it watches from (one shared feed behind them).
    def watching() -> bool:
        log = stack.component_log(stack.triggerer_name)
        return "statuses=cleared): watching from" in log and "statuses=released): watching from" in log

    # The example DAGs start paused (so other stacks that parse example_dags/ never watch): unpause them.
    for dag_id in (SETTLE_DAG, ALERT_DAG):
        assert stack.api_json("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})["is_paused"] is False
    stack.wait_for(watching, 120, "the triggerer to watch both assets")
    time.sleep(POLL_INTERVAL * 1.5)  # past the first poll: "now" is fixed

    # Round 1: 5 cleared and 2 released at random moments, some within the same poll.
    first = [sim.add_allocation(final_status="reserved", quantity=str(10**30 + i)) for i in range(7)]
    cleared, released = first[:5], first[5:]
    plan = [(i, "cleared") for i in cleared] + [(i, "released") for i in released]
    rng.shuffle(plan)
    _flip_at_random(sim, plan, span=12.0, rng=rng)
    counts, queued = _wait_settled(stack, ledger, cleared, released, timeout=180)
    assert {i: counts[i] for i in cleared} == dict.fromkeys(cleared, 1)
    assert not any(counts[i] for i in released)  # released allocations are never settled
    alerts, _q, _u = ledger.settlements(ALERT_DAG)
    assert {i: alerts[i] for i in released} == dict.fromkeys(released, 1)
    assert not any(alerts[i] for i in cleared)

    # Round 2: SIGKILL the triggerer while more allocations clear; a new triggerer takes over.
    second = [sim.add_allocation(final_status="reserved") for _ in range(5)]
    sim.set_status(second[0], "cleared")
    time.sleep(rng.uniform(0.2, POLL_INTERVAL))
    sim.set_status(second[1], "cleared")
    stack.kill_triggerer()
    killed_at = time.monotonic()
    sim.set_status(second[2], "cleared")
    sim.set_status(second[3], "cleared")  # same instant: same poll of the new triggerer
    time.sleep(1.0)
    stack.start_triggerer()
    sim.set_status(second[4], "cleared")
    all_cleared = cleared + second
    counts, queued = _wait_settled(stack, ledger, all_cleared, released, timeout=240)
    takeover = time.monotonic() - killed_at

    assert {i: counts[i] for i in all_cleared} == dict.fromkeys(all_cleared, 1), (
        f"per allocation: {dict(counts)}\n--- triggerer ---\n{stack.triggerer.log_tail(80)}"
    )
    assert not any(counts[i] for i in released)
    # Nothing else was settled, and every settle task instance settled what its run's events carried.
    assert set(counts) == set(all_cleared)
    assert ledger.settled_by_tasks() == Counter(dict.fromkeys(all_cleared, 1))
    if tasks_have_asset_state_store():
        # Airflow 3.3+: each run acknowledged, in the asset's state store, exactly what it took on.
        acks = acknowledgements(stack)
        assert {i for dag_id, i in acks if dag_id == SETTLE_DAG} == set(all_cleared)
        assert {i for dag_id, i in acks if dag_id == ALERT_DAG} == set(released)
        for (dag_id, allocation_id), run_id in acks.items():
            carried = {a["id"] for a in ledger.triggering_allocations(dag_id, run_id)}
            assert allocation_id in carried, (dag_id, allocation_id, run_id)

    latencies = sorted(queued[i] - _parse(sim.get_record(i)["updatedAt"]) for i in all_cleared)
    round1 = sorted(queued[i] - _parse(sim.get_record(i)["updatedAt"]) for i in cleared)
    print(
        f"\nevent latency flip -> DAG run queued, round 1 (steady, poll {POLL_INTERVAL:g} s): "
        f"p50 {statistics.median(round1):.2f} s, max {max(round1):.2f} s; "
        f"all incl. the triggerer kill: p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s; "
        f"kill to all settled {takeover:.1f} s; runs: {len(ledger.runs(SETTLE_DAG))} settlement, "
        f"{len(ledger.runs(ALERT_DAG))} alert"
    )
