"""The settlement asset helpers: URI convention, reading settlements from a watcher's events, and
``new_settlements`` (repeats, statuses, paged look-back, acknowledgements), as ``tests/test_assets.py`` does for
allocations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_provider_oes._acks import ack_key, delivery_key, read_ack
from airflow_provider_oes.assets import allocations_from_asset_event
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.settlement_assets import (
    new_settlements,
    settlements_asset_uri,
    settlements_from_asset_event,
)
from airflow_provider_oes.settlement_models import SettlementStatus
from tests._asset_events import AssetStateStore, InletEvents, dag_run
from tests._settlement_factories import settlement_record

T0 = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)
ASSET = Asset(name="oes_new_settlements", uri="oes://ent/settlements/pending")


def test_uri_convention_is_accepted_by_airflow() -> None:
    assert settlements_asset_uri("5f1c0e1a9b8c") == "oes://5f1c0e1a9b8c/settlements/pending"
    uri = settlements_asset_uri("5f1c0e1a9b8c", "final")
    assert uri == "oes://5f1c0e1a9b8c/settlements/final"
    assert Asset(uri=uri).uri == uri


@pytest.mark.parametrize(("enterprise", "status"), [("..", "pending"), ("ent", "pen ding"), ("ent", ""), ("", "x")])
def test_uri_refuses_bad_parts(enterprise: str, status: str) -> None:
    with pytest.raises(OESInvalidRequestError, match=r"(status must be a word like .pending.|enterprise)"):
        settlements_asset_uri(enterprise, status)


def _record(settlement_id: str, status: str = "pending", updated: float = 7.0) -> dict[str, Any]:
    """A settlement as the watcher emits it: the API's shape plus ``disputeWindowEndsAt``."""
    return settlement_record(
        status,
        id=settlement_id,
        updatedAt=(T0 + timedelta(seconds=updated)).isoformat().replace("+00:00", "Z"),
        disputeWindowEndsAt=(T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    )


_EVENT_IDS = iter(range(1, 10**9))


def _event(seconds: float, *records: dict[str, Any], runs: tuple[SimpleNamespace, ...] = ()) -> SimpleNamespace:
    """An asset event as Airflow serves a settlement watcher's event, ``seconds`` after ``T0``."""
    return SimpleNamespace(
        id=next(_EVENT_IDS),
        timestamp=T0 + timedelta(seconds=seconds),
        extra={
            "from_trigger": True,
            "payload": {
                "enterprise_id": "ent",
                "oes_conn_id": "oes_default",
                "statuses": ["pending"],
                "polled_at": T0.isoformat(),
                "settlements": list(records),
            },
        },
        created_dagruns=list(runs),
    )


def _ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


def test_reads_settlements_from_watcher_events_only() -> None:
    record = _record("s1")
    event = _event(10, record, record)
    assert settlements_from_asset_event(event) == [record, record]
    assert settlements_from_asset_event(event.extra) == [record, record]  # the extra dict itself
    assert settlements_from_asset_event(event)[0]["disputeWindowEndsAt"] == "2026-11-25T23:00:00Z"
    assert settlements_from_asset_event(event)[0] is not record  # copies: the caller may change them
    assert settlements_from_asset_event(SimpleNamespace(extra={})) == []
    assert settlements_from_asset_event(SimpleNamespace(extra=None)) == []
    assert settlements_from_asset_event(SimpleNamespace(extra={"from_trigger": True, "payload": "x"})) == []
    assert settlements_from_asset_event(SimpleNamespace(extra={"payload": {"settlements": [record]}})) == []
    # The two kinds never read each other's events.
    allocation_event = SimpleNamespace(extra={"from_trigger": True, "payload": {"allocations": [record]}})
    assert settlements_from_asset_event(allocation_event) == []
    assert allocations_from_asset_event(event) == []
    assert settlements_from_asset_event(SimpleNamespace(extra={"allocation": record})) == []


def test_a_settlement_repeated_after_a_crash_is_acted_on_by_exactly_one_run() -> None:
    first, repeat = (
        _event(10, _record("a"), _record("b", updated=8)),
        _event(40, _record("A"), _record("c", updated=37)),
    )
    inlet = InletEvents(ASSET, [first, repeat])
    assert _ids(new_settlements(ASSET, {ASSET: [first]}, inlet)) == ["a", "b"]
    assert _ids(new_settlements(ASSET, {ASSET: [repeat]}, inlet)) == ["c"]
    # Both events in one run: each settlement once.
    assert _ids(new_settlements(ASSET, {ASSET: [repeat, first]}, inlet)) == ["a", "b", "c"]


def test_the_look_back_runs_from_the_first_update_to_the_runs_first_event() -> None:
    first, repeat = _event(10, _record("a")), _event(40, _record("a"), _record("c", updated=37))
    inlet = InletEvents(ASSET, [first, repeat])
    assert _ids(new_settlements(ASSET, {ASSET: [repeat]}, inlet, page_size=7)) == ["c"]
    after, before, limit, _count = inlet.queries[0]
    assert after == (T0 + timedelta(seconds=7) - timedelta(hours=1)).isoformat()
    assert before == repeat.timestamp.isoformat()
    assert limit == 7


def test_a_settlement_that_changed_while_pending_is_a_new_delivery_but_a_true_repeat_is_not() -> None:
    first = _event(10, _record("a", updated=7))
    disputed = _event(50, _record("a", updated=45))  # a dispute moved updatedAt: review it again
    repeat = _event(60, {**_record("a", updated=7), "updatedAt": (T0 + timedelta(seconds=7)).isoformat()})
    completed = _event(70, _record("a", "completed", updated=65))
    inlet = InletEvents(ASSET, [first, disputed, repeat, completed])
    assert _ids(new_settlements(ASSET, {ASSET: [disputed]}, inlet)) == ["a"]
    # "...Z" and "+00:00" spell the same instant: still a repeat of the first event.
    assert _ids(new_settlements(ASSET, {ASSET: [repeat]}, inlet)) == []
    assert _ids(new_settlements(ASSET, {ASSET: [completed]}, inlet)) == ["a"]


def test_statuses_select_what_the_asset_stands_for() -> None:
    mixed = _event(10, _record("a", "completed"), _record("b", "rejected"), _record("c", "failed"), _record("d"))
    none = InletEvents(ASSET, [])
    assert _ids(new_settlements(ASSET, {ASSET: [mixed]}, none, statuses=["completed", "rejected"])) == ["a", "b"]
    assert _ids(new_settlements(ASSET, {ASSET: [mixed]}, none, statuses="pending")) == ["d"]
    assert _ids(new_settlements(ASSET, {ASSET: [mixed]}, none, statuses=[SettlementStatus.FAILED])) == ["c"]
    # By default every status a settlement watcher emits.
    assert _ids(new_settlements(ASSET, {ASSET: [mixed]}, none)) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match=r"settlement statuses .*'cleared'"):
        new_settlements(ASSET, {ASSET: [mixed]}, none, statuses=["cleared"])
    with pytest.raises(ValueError, match="statuses"):
        new_settlements(ASSET, {ASSET: [mixed]}, none, statuses=[])
    with pytest.raises(ValueError, match="page_size"):
        new_settlements(ASSET, {ASSET: [mixed]}, none, page_size=0)


def test_records_of_other_statuses_or_without_a_key_are_logged_and_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    logging.getLogger("airflow_provider_oes.settlement_assets").addHandler(handler := logging.StreamHandler())
    try:
        earlier = _event(5, _record("a", "failed", updated=3))  # never hides the later pending "a"
        run_event = _event(40, _record("a", updated=30), _record("b", "completed", updated=31), {"id": "x"})
        inlet = InletEvents(ASSET, [earlier, run_event])
        assert _ids(new_settlements(ASSET, {ASSET: [run_event]}, inlet, statuses=["pending"])) == ["a"]
        assert _ids(new_settlements(ASSET, {ASSET: [earlier]}, inlet, statuses=["pending"])) == []
    finally:
        logging.getLogger("airflow_provider_oes.settlement_assets").removeHandler(handler)
    err = capsys.readouterr().err
    assert "Left out 2 settlement record(s) whose status is not one of ['pending']: b:completed, x:None" in err


def test_the_look_back_is_read_in_pages_holding_at_most_a_page_of_events() -> None:
    old, fresh = _record("old", updated=-3 * 86400), _record("new", updated=100)
    stored = [_event(-3 * 86400 + 60 * i, _record(f"x{i}", updated=-3 * 86400 + 60 * i - 5)) for i in range(1200)]
    earlier_old = _event(-3 * 86400 + 30, old)
    run_event = _event(200, old, fresh)
    inlet = InletEvents(ASSET, [*stored, earlier_old, run_event])
    assert _ids(new_settlements(ASSET, {ASSET: [run_event]}, inlet, page_size=250)) == ["new"]
    assert len(inlet.queries) >= 5
    assert all(limit == 250 and count <= 250 for _a, _b, limit, count in inlet.queries)


def _context(store: AssetStateStore, run_id: str, dag_id: str = "oes_settlement_review") -> dict[str, Any]:
    return {"asset_state_store": store, "dag_run": dag_run(dag_id, run_id)}


def test_a_run_acknowledges_what_it_takes_on_and_a_repeat_in_another_run_is_dropped() -> None:
    store = AssetStateStore()
    first, repeat = (
        _event(10, _record("a"), _record("b", updated=8)),
        _event(40, _record("a"), _record("c", updated=37)),
    )
    inlet = InletEvents(ASSET, [first, repeat])
    got = new_settlements(ASSET, {ASSET: [first]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(got) == ["a", "b"]
    key_a = ack_key("oes_settlement_review", delivery_key(_record("a")))  # type: ignore[arg-type]
    assert key_a == "oes-ack/oes_settlement_review/a/pending/2026-11-25T22:00:07+00:00"
    assert read_ack(store.get(key_a)).run_id == "run1"  # type: ignore[union-attr]
    assert len(store.writes) == 2
    got = new_settlements(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=_context(store, "run2"))
    assert _ids(got) == ["c"]
    assert read_ack(store.get(key_a)).run_id == "run1"  # type: ignore[union-attr]


def test_clearing_a_run_gives_it_the_same_settlements_again_and_no_other_run_takes_them() -> None:
    store = AssetStateStore()
    event = _event(10, _record("a"), _record("b", updated=8))
    inlet = InletEvents(ASSET, [event])
    first = new_settlements(ASSET, {ASSET: [event]}, inlet, acknowledge=True, context=_context(store, "run1"))
    writes = len(store.writes)
    again = new_settlements(ASSET, {ASSET: [event]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(again) == _ids(first) == ["a", "b"]
    assert len(store.writes) == writes
    late = _event(90, _record("a"), _record("b", updated=8))
    assert new_settlements(ASSET, {ASSET: [late]}, inlet, acknowledge=True, context=_context(store, "run9")) == []


def test_a_re_emission_of_a_stranded_delivery_is_acted_on_once() -> None:
    store = AssetStateStore()
    stranded, re_emitted = _event(10, _record("a")), _event(700, _record("a"))
    inlet = InletEvents(ASSET, [stranded, re_emitted])
    got = new_settlements(ASSET, {ASSET: [re_emitted]}, inlet, acknowledge=True, context=_context(store, "run3"))
    assert _ids(got) == ["a"]
    got = new_settlements(ASSET, {ASSET: [stranded]}, inlet, acknowledge=True, context=_context(store, "run4"))
    assert got == []


def test_two_runs_racing_before_either_acknowledged_leave_it_to_the_first_event() -> None:
    store = AssetStateStore()
    first = _event(10, _record("a"), runs=(dag_run("oes_settlement_review", "run1"),))
    repeat = _event(40, _record("a"), _record("c", updated=37), runs=(dag_run("oes_settlement_review", "run2"),))
    inlet = InletEvents(ASSET, [first, repeat])
    got = new_settlements(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=_context(store, "run2"))
    assert _ids(got) == ["c"]
    got = new_settlements(ASSET, {ASSET: [first]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(got) == ["a"]
    # Another DAG on the same asset acknowledges for itself only.
    got = new_settlements(ASSET, {ASSET: [first]}, inlet, acknowledge=True, context=_context(store, "r", "audit"))
    assert _ids(got) == ["a"]


def test_without_a_state_store_acknowledge_falls_back_to_earlier_events(caplog: pytest.LogCaptureFixture) -> None:
    first, repeat = _event(10, _record("a")), _event(40, _record("a"), _record("c", updated=37))
    inlet = InletEvents(ASSET, [first, repeat])
    context = {"dag_run": dag_run("oes_settlement_review", "run2")}
    with caplog.at_level("WARNING", logger="airflow_provider_oes.settlement_assets"):
        assert _ids(new_settlements(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=context)) == ["c"]
    assert "no asset_state_store" in caplog.text
    assert [r.name for r in caplog.records] == ["airflow_provider_oes.settlement_assets"]
