"""The event-driven example's tasks, called as Airflow calls them, against in-memory asset events and state."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests._asset_events import AssetStateStore, InletEvents, dag_run
from tests._paths import EXAMPLE_DAGS
from tests.triggers._event_fakes import requires_airflow_33

# The example's watchers refuse to be built on Airflow 3.2 (no asset state store): the floor job skips it.
pytestmark = requires_airflow_33

T0 = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "oes_example_event_driven_unit", EXAMPLE_DAGS / "example_oes_event_driven_settlement.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(i: int, status: str = "cleared") -> dict[str, Any]:
    return {
        "id": f"alloc-{i:05d}",
        "status": status,
        "updatedAt": (T0 + timedelta(milliseconds=i)).isoformat(),
        "amount": {"currency": "ofctbtc", "quantity": str(10**20 + i)},
    }


def _event(seconds: float, records: list[dict[str, Any]]) -> SimpleNamespace:
    return SimpleNamespace(
        id=int(seconds * 1000),
        timestamp=T0 + timedelta(seconds=seconds),
        extra={"from_trigger": True, "payload": {"allocations": records}},
        created_dagruns=[],
    )


def _run(example: ModuleType, events: list[SimpleNamespace], store: AssetStateStore, run_id: str) -> Any:
    inlet = InletEvents(example.CLEARED, events)
    return example.cleared_allocations.function(
        triggering_asset_events={example.CLEARED: events},
        inlet_events=inlet,
        dag_run=dag_run("oes_event_driven_settlement", run_id),
        asset_state_store=store,
    )


def test_a_reserved_record_on_the_asset_does_not_fail_the_run(example: ModuleType) -> None:
    # Another producer's outlet put a reserved allocation on the cleared asset.
    events = [_event(60, [_record(1), _record(2, "reserved"), _record(3, "released")])]
    batches = _run(example, events, AssetStateStore(), "run1")
    assert [[a["id"] for a in batch] for batch in batches] == [["alloc-00001"]]


def test_a_backlog_above_max_map_length_maps_within_it_and_loses_nothing(example: ModuleType) -> None:
    records = [_record(i) for i in range(2500)]
    store = AssetStateStore()
    batches = _run(example, [_event(60, records)], store, "run1")
    assert 1 <= len(batches) <= 1024  # [core] max_map_length's default
    assert [a["id"] for batch in batches for a in batch] == [r["id"] for r in records]
    assert len(store.values) == 2500  # each acknowledged by the run
    settled = [item for batch in batches for item in example.settle.function(batch)]
    assert [s["id"] for s in settled] == [r["id"] for r in records]
    assert settled[7]["quantity"] == str(10**20 + 7)


def test_up_to_max_map_length_each_allocation_is_its_own_task_instance(example: ModuleType) -> None:
    records = [_record(i) for i in range(1024)]
    batches = _run(example, [_event(60, records)], AssetStateStore(), "run1")
    assert [len(batch) for batch in batches] == [1] * 1024
    assert example._batches([], 1024) == []


def test_clearing_a_failed_run_settles_its_allocations_again_and_no_other_run_does(example: ModuleType) -> None:
    store = AssetStateStore()
    events = [_event(60, [_record(1), _record(2)])]
    first = _run(example, events, store, "run1")
    # run1's settle failed; the operator clears the run: its first task returns the same allocations.
    assert _run(example, events, store, "run1") == first
    # A later run carrying the same deliveries (a stranded event consumed late, a repeat) takes none of them.
    assert _run(example, [_event(120, [_record(1), _record(2)])], store, "run2") == []
