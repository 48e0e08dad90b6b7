"""The asset helpers: URI convention, the outlet ``extra``, and reading allocations from either event shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_provider_oes._acks import ack_key, delivery_key, read_ack
from airflow_provider_oes.assets import (
    DEFAULT_PAGE_SIZE,
    RACE_WINDOW,
    allocations_asset_uri,
    allocations_from_asset_event,
    attach_allocation_to_outlets,
    first_deliveries,
    new_allocations,
    outlet_extra,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import Allocation
from tests._asset_events import AssetStateStore, InletEvents, dag_run
from tests._factories import allocation_record


def _allocation(**overrides: Any) -> Allocation:
    return Allocation.model_validate(allocation_record(**{"status": "cleared", "reason": None, **overrides}))


def test_uri_convention_is_accepted_by_airflow() -> None:
    uri = allocations_asset_uri("5f1c0e1a9b8c", "cleared")
    assert uri == "oes://5f1c0e1a9b8c/allocations/cleared"
    assert Asset(uri=uri).uri == uri  # Airflow keeps it as is (no normalizer rewrites it)


@pytest.mark.parametrize(("enterprise", "status"), [("..", "cleared"), ("ent", "cle ared"), ("ent", ""), ("", "x")])
def test_uri_refuses_bad_parts(enterprise: str, status: str) -> None:
    with pytest.raises(OESInvalidRequestError):
        allocations_asset_uri(enterprise, status)


def test_outlet_extra_carries_exactly_the_fields_downstream_needs() -> None:
    extra = outlet_extra(
        _allocation(amount={"currency": "ofcteth", "quantity": "12345678901234567890123"}),
        enterprise_id="ent1",
        oes_conn_id="oes_default",
    )
    assert extra == {
        "allocation": {
            "id": "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
            "type": "allocation",
            "status": "cleared",
            "amount": {"currency": "ofcteth", "quantity": "12345678901234567890123"},
            "connectionId": "c0ffee00-0000-4000-8000-000000000001",
            "reason": None,
        },
        "enterprise_id": "ent1",
        "oes_conn_id": "oes_default",
    }


class _Events(dict):
    """``context["outlet_events"]``: an accessor per outlet with a mutable ``extra``."""

    def __missing__(self, key: Any) -> Any:
        value = self[key] = SimpleNamespace(extra={})
        return value


def test_attach_updates_each_asset_outlet_and_skips_aliases() -> None:
    gated, audit, alias = Asset(uri="oes://e/allocations/a"), Asset(uri="oes://e/allocations/b"), AssetAlias("x")
    events = _Events()
    events[gated].extra["set_by_dag_author"] = 1
    task = SimpleNamespace(outlets=[gated, audit, alias])
    attached = attach_allocation_to_outlets(
        task, {"outlet_events": events}, _allocation(), enterprise_id="e", oes_conn_id="c"
    )
    assert attached == 2
    assert events[gated].extra["set_by_dag_author"] == 1  # kept
    assert events[gated].extra["allocation"]["status"] == "cleared"
    assert events[audit].extra["allocation"]["id"] == "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab"
    assert alias not in events


def test_attach_without_outlets_or_outlet_events_does_nothing() -> None:
    assert (
        attach_allocation_to_outlets(
            SimpleNamespace(outlets=[]), {}, _allocation(), enterprise_id=None, oes_conn_id="c"
        )
        == 0
    )
    task = SimpleNamespace(outlets=[Asset(uri="oes://e/allocations/a")])
    assert attach_allocation_to_outlets(task, {}, _allocation(), enterprise_id=None, oes_conn_id="c") == 0


def test_reads_allocations_from_trigger_events_and_task_outlets() -> None:
    record = allocation_record(status="cleared")
    from_trigger = SimpleNamespace(extra={"from_trigger": True, "payload": {"allocations": [record, record]}})
    from_task = SimpleNamespace(extra=outlet_extra(_allocation(), enterprise_id="e", oes_conn_id="c"))
    assert allocations_from_asset_event(from_trigger) == [record, record]
    assert allocations_from_asset_event(from_task)[0]["id"] == record["id"]
    assert allocations_from_asset_event(from_trigger.extra) == [record, record]  # the extra dict itself
    assert allocations_from_asset_event(SimpleNamespace(extra={})) == []
    assert allocations_from_asset_event(SimpleNamespace(extra={"from_trigger": True, "payload": "x"})) == []
    assert allocations_from_asset_event(SimpleNamespace(extra=None)) == []
    assert allocations_from_asset_event(SimpleNamespace(extra={"payload": {"allocations": [record]}})) == []


T0 = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


UPDATED = {"a": 7, "b": 8, "c": 37}
"""Seconds after ``T0`` each allocation became final (its ``updatedAt``, the same in a repeat)."""


def _watcher_event(seconds: float, *ids: str) -> SimpleNamespace:
    """An asset event as Airflow stores a watcher's trigger event, ``seconds`` after ``T0``."""
    allocations = [
        {"id": i, "status": "cleared", "updatedAt": (T0 + timedelta(seconds=UPDATED[i.lower()])).isoformat()}
        for i in ids
    ]
    return SimpleNamespace(
        timestamp=T0 + timedelta(seconds=seconds), extra={"from_trigger": True, "payload": {"allocations": allocations}}
    )


def _ids(allocations: list[dict[str, Any]]) -> list[str]:
    return [a["id"] for a in allocations]


def test_an_allocation_repeated_after_a_crash_is_acted_on_by_exactly_one_run() -> None:
    # The victim's event was stored; the survivor emitted a and b again, with c, in a later event.
    first, repeat = _watcher_event(10, "a", "b"), _watcher_event(40, "A", "b", "c")
    everything = [first, repeat]
    # Each event in its own run, in either order: the earlier events are all the asset has (both included).
    assert _ids(first_deliveries([first], everything)) == ["a", "b"]
    assert _ids(first_deliveries([repeat], everything)) == ["c"]
    # Both events in one run: each allocation once.
    assert _ids(first_deliveries([repeat, first], everything)) == ["a", "b", "c"]
    # Without an earlier event nothing is dropped (the first delivery is always acted on).
    assert _ids(first_deliveries([repeat], [])) == ["A", "b", "c"]


def _record(allocation_id: str, status: str = "cleared", updated: float = 7.0) -> dict[str, Any]:
    return {
        "id": allocation_id,
        "status": status,
        "updatedAt": (T0 + timedelta(seconds=updated)).isoformat().replace("+00:00", "Z"),
        "amount": {"currency": "ofctbtc", "quantity": "1"},
    }


_EVENT_IDS = iter(range(1, 10**9))


def _event(seconds: float, *records: dict[str, Any], runs: tuple[SimpleNamespace, ...] = ()) -> SimpleNamespace:
    """An asset event as Airflow serves it (``inlet_events``), ``seconds`` after ``T0``, that started ``runs``."""
    return SimpleNamespace(
        id=next(_EVENT_IDS),
        timestamp=T0 + timedelta(seconds=seconds),
        extra={"from_trigger": True, "payload": {"allocations": list(records)}},
        created_dagruns=list(runs),
    )


ASSET = Asset(name="oes_cleared", uri="oes://ent/allocations/cleared")


def test_new_allocations_looks_back_from_the_first_update_to_the_runs_first_event_a_page_at_a_time() -> None:
    first, repeat = _watcher_event(10, "a"), _watcher_event(40, "a", "c")
    first.id, repeat.id = 1, 2
    inlet = InletEvents(ASSET, [first, repeat])
    assert _ids(new_allocations(ASSET, {ASSET: [repeat]}, inlet)) == ["c"]
    # From the earliest updatedAt of the run's allocations minus the clock margin, to its first event, paged.
    after, before, limit, _count = inlet.queries[0]
    assert after == (T0 + timedelta(seconds=7) - timedelta(hours=1)).isoformat()
    assert before == repeat.timestamp.isoformat()
    assert limit == DEFAULT_PAGE_SIZE
    inlet.queries.clear()
    assert _ids(new_allocations(ASSET, {ASSET: [first]}, inlet)) == ["a"]


def test_new_allocations_of_outlet_events_reads_no_earlier_events() -> None:
    asset = Asset(name="oes_gated", uri="oes://ent/allocations/gated")
    outlet = SimpleNamespace(timestamp=T0, extra={"allocation": {"id": "a", "status": "cleared"}})
    inlet = InletEvents(asset, [])
    assert _ids(new_allocations(asset, {asset: [outlet]}, inlet)) == ["a"]
    assert inlet.queries == []  # no updatedAt: a task's outlet event is never a watcher's repeat


# Item 8: repeats are (id, status, updatedAt); records that are not final are neither acted on nor repeats.


def test_a_reserved_record_from_another_producer_is_left_out_and_never_hides_the_real_clearing() -> None:
    # Another producer's outlet attached "a" while reserved; later the watcher reports "a" cleared.
    other_producer = _event(5, _record("a", "reserved", updated=3))
    clearing = _event(40, _record("a", "cleared", updated=30), _record("b", "reserved", updated=31))
    inlet = InletEvents(ASSET, [other_producer, clearing])
    # The reserved "b" in the run's own event is left out: no raise, no delivery.
    assert _ids(new_allocations(ASSET, {ASSET: [clearing]}, inlet)) == ["a"]
    assert _ids(new_allocations(ASSET, {ASSET: [other_producer]}, inlet)) == []
    assert _ids(first_deliveries([clearing], [other_producer, clearing])) == ["a"]


def test_a_later_real_change_of_the_same_id_is_a_new_delivery_but_a_true_repeat_is_not() -> None:
    first = _event(10, _record("a", "cleared", updated=7))
    changed = _event(50, _record("A", "cleared", updated=45))  # same id, a later updatedAt: a new fact
    repeat = _event(60, {**_record("a", "cleared", updated=7), "updatedAt": (T0 + timedelta(seconds=7)).isoformat()})
    inlet = InletEvents(ASSET, [first, changed, repeat])
    assert _ids(new_allocations(ASSET, {ASSET: [changed]}, inlet)) == ["A"]
    # "...Z" and "+00:00" spell the same instant: still a repeat of the first event.
    assert _ids(new_allocations(ASSET, {ASSET: [repeat]}, inlet)) == []


def test_statuses_select_what_the_asset_stands_for() -> None:
    mixed = _event(10, _record("a", "cleared"), _record("b", "released"))
    assert _ids(new_allocations(ASSET, {ASSET: [mixed]}, InletEvents(ASSET, []), statuses=["cleared"])) == ["a"]
    assert _ids(new_allocations(ASSET, {ASSET: [mixed]}, InletEvents(ASSET, []))) == ["a", "b"]
    with pytest.raises(ValueError, match="reserved"):
        new_allocations(ASSET, {ASSET: [mixed]}, InletEvents(ASSET, []), statuses=["reserved"])


# Item 7: what new_allocations reads is bounded.


def test_the_look_back_is_read_in_pages_holding_at_most_a_page_of_events() -> None:
    # One old allocation in a replay widens the window to days: 2,400 events lie in it.
    old, fresh = _record("old", updated=-3 * 86400), _record("new", updated=100)
    stored = [_event(-3 * 86400 + 60 * i, _record(f"x{i}", updated=-3 * 86400 + 60 * i - 5)) for i in range(2400)]
    earlier_old = _event(-3 * 86400 + 30, old)  # "old" was delivered before: a repeat
    run_event = _event(200, old, fresh)
    inlet = InletEvents(ASSET, [*stored, earlier_old, run_event])
    assert _ids(new_allocations(ASSET, {ASSET: [run_event]}, inlet, page_size=500)) == ["new"]
    assert len(inlet.queries) >= 5
    assert all(limit == 500 and count <= 500 for _a, _b, limit, count in inlet.queries)


def test_paging_gets_past_more_events_at_one_timestamp_than_a_page_holds() -> None:
    same = [_event(10, _record(f"x{i}")) for i in range(1200)]
    carried = _event(10, _record("a", updated=8))  # stored last, at the same instant as the 1,200 others
    later = _event(20, _record("z"))
    run_event = _event(30, _record("a", updated=8), _record("b", updated=9))
    inlet = InletEvents(ASSET, [*same, carried, later, run_event])
    assert _ids(new_allocations(ASSET, {ASSET: [run_event]}, inlet, page_size=100)) == ["b"]
    # Every event of the window was seen once: the last query reached past the crowded instant.
    assert inlet.queries[-1][3] < inlet.queries[-1][2]


# Items 2+4, consumer side: acknowledgements in the asset's state store.


def _context(store: AssetStateStore, run_id: str, dag_id: str = "settle_dag") -> dict[str, Any]:
    return {"asset_state_store": store, "dag_run": dag_run(dag_id, run_id)}


def test_a_run_acknowledges_what_it_takes_on_and_a_repeat_in_another_run_is_dropped() -> None:
    store = AssetStateStore()
    first, repeat = (
        _event(10, _record("a"), _record("b", updated=8)),
        _event(40, _record("a"), _record("c", updated=37)),
    )
    inlet = InletEvents(ASSET, [first, repeat])
    got = new_allocations(ASSET, {ASSET: [first]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(got) == ["a", "b"]
    key_a = ack_key("settle_dag", delivery_key(_record("a")))  # type: ignore[arg-type]
    assert key_a.startswith("oes-ack/settle_dag/a/cleared/")
    assert read_ack(store.get(key_a)).run_id == "run1"  # type: ignore[union-attr]
    # The repeat's run (its first event did not start run1 in this store's view) drops "a" on the ack alone.
    got = new_allocations(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=_context(store, "run2"))
    assert _ids(got) == ["c"]
    assert read_ack(store.get(key_a)).run_id == "run1"  # type: ignore[union-attr]


def test_clearing_a_run_gives_it_the_same_allocations_again() -> None:
    store = AssetStateStore()
    event = _event(10, _record("a"), _record("b", updated=8))
    inlet = InletEvents(ASSET, [event])
    first = new_allocations(ASSET, {ASSET: [event]}, inlet, acknowledge=True, context=_context(store, "run1"))
    writes = len(store.writes)
    again = new_allocations(ASSET, {ASSET: [event]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(again) == _ids(first) == ["a", "b"]
    assert len(store.writes) == writes  # nothing re-written: still run1's
    # Any other run of the DAG carrying them (a stranded event consumed late) leaves them to run1.
    late = _event(90, _record("a"), _record("b", updated=8))
    assert new_allocations(ASSET, {ASSET: [late]}, inlet, acknowledge=True, context=_context(store, "run9")) == []


def test_a_re_emission_of_a_stranded_or_unstored_delivery_is_acted_on() -> None:
    # The first event carrying "a" started no run (stranded queue row, or its watcher was unlinked): the
    # watcher re-emits "a", unacknowledged, and that run must act on it.
    store = AssetStateStore()
    stranded = _event(10, _record("a"))
    re_emitted = _event(700, _record("a"))
    inlet = InletEvents(ASSET, [stranded, re_emitted])
    got = new_allocations(ASSET, {ASSET: [re_emitted]}, inlet, acknowledge=True, context=_context(store, "run3"))
    assert _ids(got) == ["a"]
    # The stranded event reaches a run at last (with the next clearing): "a" is not settled twice.
    got = new_allocations(ASSET, {ASSET: [stranded]}, inlet, acknowledge=True, context=_context(store, "run4"))
    assert got == []


def test_two_runs_racing_before_either_acknowledged_leave_it_to_the_first_event() -> None:
    store = AssetStateStore()
    first = _event(10, _record("a"), runs=(dag_run("settle_dag", "run1"),))
    repeat = _event(40, _record("a"), _record("c", updated=37), runs=(dag_run("settle_dag", "run2"),))
    inlet = InletEvents(ASSET, [first, repeat])
    got = new_allocations(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=_context(store, "run2"))
    assert _ids(got) == ["c"]  # run1 holds "a" though it has not run yet
    got = new_allocations(ASSET, {ASSET: [first]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert _ids(got) == ["a"]
    # A run of another DAG on the same asset neither holds nor acknowledges for this one.
    other = _event(5, _record("c", updated=37), runs=(dag_run("audit_dag", "r"),))
    inlet.stored.insert(0, other)
    new_allocations(ASSET, {ASSET: [other]}, inlet, acknowledge=True, context=_context(store, "r", "audit_dag"))
    got = new_allocations(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=_context(store, "run2"))
    assert _ids(got) == ["c"]


def test_with_acknowledgements_the_look_back_is_the_race_window_whatever_the_updates() -> None:
    store = AssetStateStore()
    run_event = _event(200, _record("old", updated=-7 * 86400), _record("new", updated=100))
    inlet = InletEvents(ASSET, [run_event])
    new_allocations(ASSET, {ASSET: [run_event]}, inlet, acknowledge=True, context=_context(store, "run1"))
    assert [q[0] for q in inlet.queries] == [(run_event.timestamp - RACE_WINDOW).isoformat()]


def test_without_a_state_store_acknowledge_falls_back_to_earlier_events(caplog: pytest.LogCaptureFixture) -> None:
    first, repeat = _event(10, _record("a")), _event(40, _record("a"), _record("c", updated=37))
    inlet = InletEvents(ASSET, [first, repeat])
    context = {"dag_run": dag_run("settle_dag", "run2")}  # Airflow 3.2: no asset_state_store
    with caplog.at_level("WARNING", logger="airflow_provider_oes.assets"):
        assert _ids(new_allocations(ASSET, {ASSET: [repeat]}, inlet, acknowledge=True, context=context)) == ["c"]
    assert "no asset_state_store" in caplog.text
