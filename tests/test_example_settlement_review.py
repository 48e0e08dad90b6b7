"""Example 10's tasks, called as Airflow calls them, against in-memory asset events and state (the run with the
simulator and the real execution API is ``tests/integration/test_example_settlement_review.py``)."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests._asset_events import AssetStateStore, InletEvents, dag_run
from tests._paths import EXAMPLE_DAGS
from tests._settlement_factories import settlement_record
from tests.triggers._event_fakes import requires_airflow_33

# The example's watchers need Airflow 3.3 (the asset state store): the floor job skips it.
pytestmark = requires_airflow_33

T0 = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "oes_example_settlement_review_unit", EXAMPLE_DAGS / "example_oes_settlement_review.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(i: int, status: str = "pending", **overrides: Any) -> dict[str, Any]:
    fields = {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "externalId": f"trades-{i}",
        "updatedAt": (T0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        "disputeWindowEndsAt": (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    return settlement_record(status, **{**fields, **overrides})


def _event(seconds: float, records: list[dict[str, Any]]) -> SimpleNamespace:
    return SimpleNamespace(
        id=int(seconds * 1000),
        timestamp=T0 + timedelta(seconds=seconds),
        extra={"from_trigger": True, "payload": {"settlements": records, "statuses": ["pending"]}},
        created_dagruns=[],
    )


def _to_review(example: ModuleType, events: list[SimpleNamespace], store: AssetStateStore, run_id: str) -> Any:
    return example.to_review.function(
        triggering_asset_events={example.NEW_SETTLEMENTS: events},
        inlet_events=InletEvents(example.NEW_SETTLEMENTS, events),
        dag_run=dag_run(example.REVIEW_DAG, run_id),
        asset_state_store=store,
    )


def test_the_watchers_are_acknowledged_by_the_dags_scheduled_on_them(example: ModuleType) -> None:
    assert example.NEW_SETTLEMENTS.uri == "oes://sim-enterprise/settlements/pending"
    assert example.FINAL_SETTLEMENTS.uri == "oes://sim-enterprise/settlements/final"
    (new,) = example.NEW_SETTLEMENTS.watchers
    (final,) = example.FINAL_SETTLEMENTS.watchers
    _path, new_kwargs = new.trigger.serialize()
    _path, final_kwargs = final.trigger.serialize()
    assert list(new_kwargs["statuses"]) == ["pending"]
    assert list(new_kwargs["acknowledged_by"]) == [example.dag.dag_id]
    assert sorted(final_kwargs["statuses"]) == ["completed", "rejected"]
    assert list(final_kwargs["acknowledged_by"]) == [example.outcome_dag.dag_id]
    assert [a.name for a in example.dag.timetable.asset_condition.objects] == ["oes_new_settlements"]
    assert [a.name for a in example.outcome_dag.timetable.asset_condition.objects] == ["oes_final_settlements"]


def test_each_new_settlement_is_reviewed_by_one_run_and_a_cleared_run_gets_its_own_again(example: ModuleType) -> None:
    store = AssetStateStore()
    events = [_event(60, [_record(1), _record(2), _record(3, "completed")])]
    first = _to_review(example, events, store, "run1")
    assert [s["id"] for s in first] == [_record(1)["id"], _record(2)["id"]]  # the completed record is left out
    assert first[0]["disputeWindowEndsAt"] == "2026-11-25T23:00:00Z"
    assert len(store.values) == 2
    assert _to_review(example, events, store, "run1") == first  # the failed run, cleared
    # A repeat of the same deliveries in another run (a re-emission raced the ack): nothing to review.
    assert _to_review(example, [_event(120, [_record(1), _record(2)])], store, "run2") == []
    # The same settlement changed while pending (a dispute moved updatedAt): reviewed again.
    changed = _record(1, updatedAt=(T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"))
    assert [s["updatedAt"] for s in _to_review(example, [_event(400, [changed])], store, "run3")] == [
        changed["updatedAt"]
    ]


def test_compare_nets_exactly_and_names_every_difference(example: ModuleType) -> None:
    settlement = _record(1)
    huge = "-12345678901234567890123"
    transfers = [
        {"currency": "ofctbtc", "quantity": "-100000000"},
        {"currency": "ofctbtc", "quantity": huge},
        {"currency": "ofctusdt", "quantity": "95000000000"},
    ]
    netted_btc = str(-100000000 + int(huge))
    ok = example.compare(settlement, transfers, {"ofctbtc": netted_btc, "ofctusdt": "95000000000"})
    assert ok["differences"] == {}
    assert ok["netted"] == {"ofctbtc": netted_btc, "ofctusdt": "95000000000"}
    bad = example.compare(settlement, transfers, {"ofctbtc": "-100000000", "ofcteth": "5"})
    assert bad["differences"] == {
        "ofctbtc": {"ours": "-100000000", "settlement": netted_btc},
        "ofcteth": {"ours": "5", "settlement": "0"},
        "ofctusdt": {"ours": "0", "settlement": "95000000000"},
    }
    unknown = example.compare(settlement, transfers[:1], None)
    assert unknown["differences"]["externalId"] == {"ours": "no trade records", "settlement": "trades-1"}


def test_a_mismatch_fails_the_run_loudly_with_the_differences_and_the_deadline(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    ends = (datetime.now(timezone.utc) + timedelta(minutes=90)).isoformat().replace("+00:00", "Z")
    good = {**example.compare(_record(1), [], {}), "disputeWindowEndsAt": ends}
    bad = {**example.compare(_record(2), [{"currency": "ofctbtc", "quantity": "7"}], {}), "disputeWindowEndsAt": ends}
    assert example.alert_or_mark_reconciled.function([good]) == [good["id"]]
    with pytest.raises(AirflowFailException) as raised:
        example.alert_or_mark_reconciled.function([good, bad])
    message = str(raised.value)
    assert message.startswith("1 settlement(s) to dispute:")
    assert bad["id"] in message
    assert "'ofctbtc': {'ours': '0', 'settlement': '7'}" in message
    assert f"dispute it before {ends} (89 min left)" in message or f"dispute it before {ends} (90 min left)" in message
    out = capsys.readouterr().out
    assert f"ALERT: settlement {bad['id']}" in out
    assert f"settlement {good['id']} (trades-1) reconciled" in out


def test_time_left_says_when_there_is_no_window_or_it_closed(example: ModuleType) -> None:
    now = T0 + timedelta(hours=2)
    assert "no dispute window" in example.time_left({"disputeWindowEndsAt": None}, now)
    assert "closed at 2026-11-25T23:00:00Z" in example.time_left({"disputeWindowEndsAt": "2026-11-25T23:00:00Z"}, now)


def test_the_outcome_dag_reports_finals_once_with_the_reason(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AssetStateStore()
    records = [_record(1, "completed"), _record(2, "rejected", settlementType="onchain"), _record(3)]
    events = [_event(60, records)]

    def notify(run_id: str, events: list[SimpleNamespace]) -> Any:
        return example.notify.function(
            triggering_asset_events={example.FINAL_SETTLEMENTS: events},
            inlet_events=InletEvents(example.FINAL_SETTLEMENTS, events),
            dag_run=dag_run(example.OUTCOME_DAG, run_id),
            asset_state_store=store,
        )

    got = notify("run1", events)
    assert got == [
        {"id": records[0]["id"], "status": "completed", "reason": None},
        {"id": records[1]["id"], "status": "rejected", "reason": records[1]["reason"]},
    ]
    assert f"is rejected: {records[1]['reason']}" in capsys.readouterr().out
    assert notify("run2", [_event(90, records)]) == []
