"""``new_allocations`` against the Task SDK's own accessors (``inlet_events``, ``triggering_asset_events``,
``asset_state_store``), with the supervisor's side answered in memory the way Airflow's execution API answers.

This pins the calls to what the installed Airflow offers: paging with ``after``/``before``/``ascending``/
``limit`` on the real ``InletEventsAccessor``, and, on Airflow 3.3+, reading and writing the asset's state
store from a task. On Airflow 3.2 (no task-side state store) it pins the fallback instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_provider_oes.assets import new_allocations

T0 = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)
ASSET = Asset(name="oes_cleared_allocations", uri="oes://sim-enterprise/allocations/cleared")


def _record(allocation_id: str, seconds: float) -> dict[str, Any]:
    return {"id": allocation_id, "status": "cleared", "updatedAt": (T0 + timedelta(seconds=seconds)).isoformat()}


class _Supervisor:
    """``SUPERVISOR_COMMS``: answers asset-event queries and asset state store reads/writes."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events, self.store = events, {}  # type: dict[str, Any]
        self.event_queries: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time import comms

        kind = type(msg).__name__
        if kind == "GetAssetEventByAsset":
            self.event_queries.append(msg)
            found = [
                e
                for e in self.events
                if (msg.after is None or e["timestamp"] >= msg.after)
                and (msg.before is None or e["timestamp"] <= msg.before)
            ]
            found.sort(key=lambda e: e["timestamp"], reverse=not msg.ascending)
            found = found[: msg.limit] if msg.limit else found
            return comms.AssetEventsResult.model_validate({"asset_events": found, "type": "AssetEventsResult"})
        if kind == "GetAssetStateStoreByName":
            if msg.key not in self.store:
                return comms.ErrorResponse(error=comms.ErrorType.ASSET_STORE_NOT_FOUND)
            return comms.AssetStateStoreResult(value=self.store[msg.key])
        if kind == "SetAssetStateStoreByName":
            self.store[msg.key] = msg.value
            return None
        raise AssertionError(f"unexpected message {msg!r}")


def _stored_event(event_id: int, seconds: float, *records: dict[str, Any], runs: tuple[str, ...] = ()) -> dict:
    return {
        "id": event_id,
        "timestamp": T0 + timedelta(seconds=seconds),
        "extra": {"from_trigger": True, "payload": {"allocations": list(records)}},
        "asset": {"name": ASSET.name, "uri": ASSET.uri, "group": "asset", "extra": {}},
        "created_dagruns": [
            {
                "run_id": run,
                "dag_id": "oes_event_driven_settlement",
                "logical_date": None,
                "start_date": T0,
                "end_date": None,
                "state": "running",
                "data_interval_start": None,
                "data_interval_end": None,
                "partition_key": None,
            }
            for run in runs
        ],
    }


def _triggering(stored: dict[str, Any]) -> Any:
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    event = AssetEventDagRunReferenceResult(
        asset={"name": ASSET.name, "uri": ASSET.uri, "extra": {}},
        extra=stored["extra"],
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=stored["timestamp"],
    )
    return TriggeringAssetEventsAccessor.build([event])


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> _Supervisor:
    from airflow.sdk.execution_time import task_runner

    # 1,205 events in the look-back, a repeat of "a" among them, then the run's own event.
    events = [_stored_event(i, 10 + i, _record(f"x{i}", 5 + i)) for i in range(1, 1206)]
    events.insert(600, _stored_event(5000, 610, _record("a", 7)))
    events.append(_stored_event(9000, 2000, _record("a", 7), _record("b", 1990)))
    fake = _Supervisor(events)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


def test_the_real_inlet_events_accessor_is_read_a_page_at_a_time(supervisor: _Supervisor) -> None:
    from airflow.sdk.execution_time.context import InletEventsAccessors

    run_event = supervisor.events[-1]
    inlet = InletEventsAccessors([ASSET])
    found = new_allocations(ASSET, _triggering(run_event), inlet, page_size=250)
    assert [a["id"] for a in found] == ["b"]  # "a" was in an earlier event
    assert len(supervisor.event_queries) >= 5
    assert {q.limit for q in supervisor.event_queries} == {250}
    assert all(q.ascending and q.before == run_event["timestamp"] for q in supervisor.event_queries)


def _has_task_state_store() -> bool:
    from airflow.sdk.execution_time import context

    return hasattr(context, "AssetStateStoreAccessors")


def test_a_task_acknowledges_through_the_real_asset_state_store(supervisor: _Supervisor) -> None:
    from airflow.sdk.execution_time.context import InletEventsAccessors

    run_event = supervisor.events[-1]
    dag_run = SimpleNamespace(dag_id="oes_event_driven_settlement", run_id="run2")
    if not _has_task_state_store():
        # Airflow 3.2: the task context has no asset_state_store; acknowledge falls back to earlier events.
        found = new_allocations(
            ASSET, _triggering(run_event), InletEventsAccessors([ASSET]), acknowledge=True, context={"dag_run": dag_run}
        )
        assert [a["id"] for a in found] == ["b"]
        assert supervisor.store == {}
        return
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    context = {"dag_run": dag_run, "asset_state_store": AssetStateStoreAccessors([ASSET])}
    found = new_allocations(
        ASSET, _triggering(run_event), InletEventsAccessors([ASSET]), acknowledge=True, context=context
    )
    # The earlier event carrying "a" started no run: with acknowledgements it does not make "a" a repeat.
    assert sorted(a["id"] for a in found) == ["a", "b"]
    assert sorted(supervisor.store) == [
        f"oes-ack/oes_event_driven_settlement/a/cleared/{(T0 + timedelta(seconds=7)).isoformat()}",
        f"oes-ack/oes_event_driven_settlement/b/cleared/{(T0 + timedelta(seconds=1990)).isoformat()}",
    ]
    assert {v["run_id"] for v in supervisor.store.values()} == {"run2"}
    # Only the race window before the run's first event was read.
    assert min(q.after for q in supervisor.event_queries) == run_event["timestamp"] - timedelta(hours=1)
