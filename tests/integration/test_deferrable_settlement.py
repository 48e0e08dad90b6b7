"""The deferrable settlement sensor end to end: ``dag.test()`` defers, runs the trigger in process, and resumes.

Against the simulator over real HTTP (example 9). Each settlement stays ``pending`` until the trigger's poller
has asked about it in the settlements list, so the outcome is always seen through the trigger.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from tests.integration._dagrun import load_example_dag as _dag
from tests.integration._dagrun import task_instances
from tests.integration._dagrun import xcom_return_value as _xcom

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun]

SETTLEMENTS_SUFFIX = "/clients/settlements"


def _listed(sim: OESSimulator, settlement_id: str) -> int:
    """How many settlements-list requests asked about ``settlement_id`` (the trigger's poller)."""
    return sum(
        1
        for _, path, query, _ in sim.requests
        if path.endswith(SETTLEMENTS_SUFFIX) and settlement_id in parse_qs(query).get("settlementIds", [])
    )


def _settle_once_listed(sim: OESSimulator, moves: dict[str, tuple[str, str | None]]) -> threading.Thread:
    """Move each settlement to its final status once the trigger's poller has seen it pending in the list."""

    def run() -> None:
        deadline = time.monotonic() + 90
        pending = dict(moves)
        while pending and time.monotonic() < deadline:
            for settlement_id in [s for s in pending if _listed(sim, s)]:
                status, reason = pending.pop(settlement_id)
                sim.set_settlement_status(settlement_id, status, reason)
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_deferred_settlements_complete_and_are_netted(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str
) -> None:
    legs = [
        [{"currency": "ofctbtc", "quantity": "-98765432109876543210987654321", "usd_value": "1.5"}],
        [{"currency": "ofctbtc", "quantity": "1000", "usd_value": 10}, {"currency": "ofctusdt", "quantity": "5"}],
    ]
    ids = [oes_simulator.add_settlement(final_status="pending", transfers=t) for t in legs]
    script = _settle_once_listed(oes_simulator, {i: ("completed", None) for i in ids})

    dag_run = _dag("example_oes_settlement_deferrable").test(run_conf={"settlement_ids": ids})
    script.join(timeout=5)

    assert str(dag_run.state) == "success"
    states = {key: str(ti.state) for key, ti in task_instances(dag_run).items()}
    assert states == {
        "settlement_ids": "success",
        "wait_for_settlement[0]": "success",
        "wait_for_settlement[1]": "success",
        "net_settled": "success",
    }
    for index, settlement_id in enumerate(ids):
        pushed = _xcom(dag_run, "wait_for_settlement", index)
        assert pushed["settlement"] == oes_simulator.get_settlement_record(settlement_id)
        assert pushed["settlement"]["status"] == "completed"
        assert pushed["settlement"]["id"] == settlement_id
        assert [t["quantity"] for t in pushed["settlementTransfers"]] == [leg["quantity"] for leg in legs[index]]
        # Seen pending by the worker's first check, then through the trigger's id batches.
        assert _listed(oes_simulator, settlement_id) >= 2
    assert _xcom(dag_run, "net_settled") == {
        "ofctbtc": str(-98765432109876543210987654321 + 1000),
        "ofctusdt": "5",
    }


def test_a_rejected_settlement_fails_its_map_index_without_retries(
    airflow_db: Any, oes_simulator: OESSimulator, oes_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    completed = oes_simulator.add_settlement(final_status="pending")
    rejected = oes_simulator.add_settlement(final_status="pending", settlement_type="onchain")
    script = _settle_once_listed(
        oes_simulator, {completed: ("completed", None), rejected: ("rejected", "travel rule check failed")}
    )

    dag_run = _dag("example_oes_settlement_deferrable").test(run_conf={"settlement_ids": [completed, rejected]})
    script.join(timeout=5)

    assert str(dag_run.state) == "failed"
    tis = task_instances(dag_run)
    assert str(tis["wait_for_settlement[0]"].state) == "success"
    assert str(tis["wait_for_settlement[1]"].state) == "failed"
    assert tis["wait_for_settlement[1]"].try_number == 1  # rejected is final: no retry
    assert str(tis["net_settled"].state) == "upstream_failed"
    assert _xcom(dag_run, "wait_for_settlement", 1) is None
    assert _listed(oes_simulator, rejected) >= 1
    assert "travel rule check failed" in capsys.readouterr().out
