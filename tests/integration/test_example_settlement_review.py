"""Example 10 end to end with ``dag.test()``: a run started by a settlement watcher's asset events, its tasks on
Airflow's real execution API (triggering events, inlet events, the asset state store, a Variable) and the
settlements' transfers read from the simulator over HTTP.

``dag.test()`` makes a manual run; the test gives it the asset events a watcher would have stored, the way the
scheduler does for an asset-triggered run (``dag_run.consumed_asset_events``). The watcher itself runs in
``tests/fullstack/test_settlement_review_fullstack.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration._dagrun import load_example
from tests.integration._dagrun import task_states as _states
from tests.integration._dagrun import xcom_return_value as _xcom
from tests.triggers._event_fakes import requires_airflow_33

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = [pytest.mark.integration, pytest.mark.dagrun, requires_airflow_33]

WINDOW_PARTNER = "4d4d4d4d-4d4d-4d4d-8d4d-4d4d4d4d4d4d"
MATCHING = "sim-trades-2026-12-01"  # in the example's TRADE_RECORDS: the simulator's default transfers


def _as_emitted(sim: OESSimulator, settlement_id: str, window_minutes: int) -> dict[str, Any]:
    """The settlement as the watcher emits it: the API's record plus ``disputeWindowEndsAt``."""
    record = sim.get_settlement_record(settlement_id)
    created = datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
    ends = (created + timedelta(minutes=window_minutes)).astimezone(timezone.utc)
    return {**record, "disputeWindowEndsAt": ends.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def _utc(record: dict[str, Any]) -> str:
    return datetime.fromisoformat(record["updatedAt"].replace("Z", "+00:00")).isoformat()


@pytest.fixture
def runs_on_asset_events(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """Give each ``dag.test()`` run the asset events of one batch of settlements (append a batch per run)."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    batches: list[list[dict[str, Any]]] = []
    create = dagrun_module.get_or_create_dagrun

    def with_events(*, dag: Any, session: Any, **kwargs: Any) -> Any:
        run = create(dag=dag, session=session, **kwargs)
        settlements = batches.pop(0)
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "oes_new_settlements"))
        assert asset is not None, "dag.test() synced the DAG and its asset first"
        payload = {"enterprise_id": "sim-enterprise", "oes_conn_id": "oes_default", "statuses": ["pending"]}
        event = AssetEvent(
            asset_id=asset.id,
            extra={"from_trigger": True, "payload": {**payload, "polled_at": "x", "settlements": settlements}},
        )
        session.add(event)
        session.flush()
        run.consumed_asset_events.append(event)
        session.commit()
        return run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", with_events)
    return batches


def _acks(dag_id: str) -> dict[tuple[str, str], str]:
    """``{(settlement id, updatedAt): run id}`` of the example's acknowledgements in the metadata DB."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found = {}
    with create_session() as session:
        for row in session.scalars(select(AssetStateStoreModel)):
            if row.key.startswith(f"oes-ack/{dag_id}/"):
                _prefix, _dag, settlement_id, _status, updated = row.key.split("/", 4)
                found[settlement_id, updated] = json.loads(row.value)["run_id"]
    return found


def test_new_settlements_are_reconciled_once_and_a_mismatch_fails_loudly_before_the_window_closes(
    airflow_db: Any,
    oes_simulator: OESSimulator,
    oes_connection: str,
    runs_on_asset_events: list[list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow.models.variable import Variable  # the metadata DB itself: the test is no task

    sim = oes_simulator
    sim.add_partner(WINDOW_PARTNER, dispute_window_minutes=60, top_up_window_minutes=15)
    ours = sim.add_settlement(partner_id=WINDOW_PARTNER, external_id=MATCHING, final_status="pending")
    legs = [{"currency": "ofctbtc", "quantity": "-12345678901234567890123", "usd_value": None}]
    odd = sim.add_settlement(
        partner_id=WINDOW_PARTNER, external_id="trades-unknown", transfers=legs, final_status="pending"
    )
    emitted = [_as_emitted(sim, ours, 60), _as_emitted(sim, odd, 60)]
    example = load_example("example_oes_settlement_review")

    # Run 1: both new settlements; the odd one is not in our records: the run fails, naming it and the deadline.
    runs_on_asset_events.append(emitted)
    first = example.dag.test()
    assert str(first.state) == "failed"
    assert _states(first) == {"to_review": "success", "reconcile": "success", "alert_or_mark_reconciled": "failed"}
    assert [s["id"] for s in _xcom(first, "to_review")] == [ours, odd]
    reviews = {r["id"]: r for r in _xcom(first, "reconcile")}
    assert reviews[ours]["differences"] == {}
    assert reviews[ours]["netted"] == {"ofctbtc": "-100000000", "ofctusdt": "95000000000"}
    assert reviews[odd]["differences"] == {
        "ofctbtc": {"ours": "0", "settlement": "-12345678901234567890123"},
        "externalId": {"ours": "no trade records", "settlement": "trades-unknown"},
    }
    out = capsys.readouterr().out
    assert f"ALERT: settlement {odd} (trades-unknown) does not match our records" in out
    assert f"dispute it before {emitted[1]['disputeWindowEndsAt']} (" in out
    assert f"settlement {ours} ({MATCHING}) reconciled" in out
    assert sorted(_acks(example.REVIEW_DAG).items()) == sorted(
        {(ours, _utc(emitted[0])): first.run_id, (odd, _utc(emitted[1])): first.run_id}.items()
    )
    requests_after_first = sim.request_count
    assert requests_after_first == 2  # one GET per settlement: the events carry the settlements themselves

    # Run 2: the same deliveries again (a re-emission that raced the acknowledgement): nothing is reviewed twice.
    runs_on_asset_events.append(emitted)
    second = example.dag.test()
    assert str(second.state) == "success"
    assert _xcom(second, "to_review") == []
    assert _xcom(second, "alert_or_mark_reconciled") == []
    assert sim.request_count == requests_after_first

    # Run 3: someone disputed the odd one (updatedAt moved: a new delivery) and our records now know it (the
    # Variable): reviewed again, and it matches.
    sim.raise_dispute(odd, expected_transfers={"ofctbtc": "-1"})
    records = {**example.TRADE_RECORDS, "trades-unknown": {"ofctbtc": "-12345678901234567890123"}}
    Variable.set(example.TRADE_RECORDS_VARIABLE, json.dumps(records))
    try:
        runs_on_asset_events.append([_as_emitted(sim, odd, 60)])
        third = example.dag.test()
    finally:
        Variable.delete(example.TRADE_RECORDS_VARIABLE)
    assert str(third.state) == "success"
    assert _xcom(third, "alert_or_mark_reconciled") == [odd]
    disputed = sim.get_settlement_record(odd)
    assert disputed["updatedAt"] != emitted[1]["updatedAt"]
    assert _acks(example.REVIEW_DAG)[odd, _utc(disputed)] == third.run_id
    assert len(_acks(example.REVIEW_DAG)) == 3
