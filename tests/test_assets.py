"""The asset helpers: URI convention, the outlet ``extra``, and reading allocations from either event shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_provider_oes.assets import (
    allocations_asset_uri,
    allocations_from_asset_event,
    attach_allocation_to_outlets,
    first_deliveries,
    new_allocations,
    outlet_extra,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import Allocation
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


class _InletEvents:
    """``inlet_events`` of a task: records the look-back window asked for."""

    def __init__(self, asset: Asset, stored: list[SimpleNamespace]) -> None:
        self.asset, self.stored, self.asked = asset, stored, []

    def __getitem__(self, asset: Asset) -> _InletEvents:
        assert asset == self.asset
        return self

    def after(self, value: str) -> _InletEvents:
        self.asked.append(("after", value))
        return self

    def before(self, value: str) -> list[SimpleNamespace]:
        self.asked.append(("before", value))
        # Airflow's bound is inclusive: the run's own first event comes back too.
        return [e for e in self.stored if e.timestamp <= datetime.fromisoformat(value)]


def test_new_allocations_looks_back_from_the_first_update_to_the_runs_first_event() -> None:
    asset = Asset(name="oes_cleared", uri="oes://ent/allocations/cleared")
    first, repeat = _watcher_event(10, "a"), _watcher_event(40, "a", "c")
    inlet = _InletEvents(asset, [first, repeat])
    assert _ids(new_allocations(asset, {asset: [repeat]}, inlet)) == ["c"]
    # From the earliest updatedAt of the run's allocations minus the clock margin, to its first event.
    assert inlet.asked == [
        ("after", (T0 + timedelta(seconds=7) - timedelta(hours=1)).isoformat()),
        ("before", repeat.timestamp.isoformat()),
    ]
    inlet.asked.clear()
    assert _ids(new_allocations(asset, {asset: [first]}, inlet)) == ["a"]


def test_new_allocations_of_outlet_events_reads_no_earlier_events() -> None:
    asset = Asset(name="oes_gated", uri="oes://ent/allocations/gated")
    outlet = SimpleNamespace(timestamp=T0, extra={"allocation": {"id": "a", "status": "cleared"}})
    inlet = _InletEvents(asset, [])
    assert _ids(new_allocations(asset, {asset: [outlet]}, inlet)) == ["a"]
    assert inlet.asked == []  # no updatedAt: a task's outlet event is never a watcher's repeat
