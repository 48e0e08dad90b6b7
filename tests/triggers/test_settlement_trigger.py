"""SettlementStatusTrigger and its shared settlement poller: serialization, events, and the sensor's resume,
against the local simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_oes.exceptions import (
    OESNotFoundError,
    OESResponseError,
    SettlementFailedError,
    SettlementRejectedError,
)
from airflow_provider_oes.sensors.settlement import SettlementStatusSensor
from airflow_provider_oes.triggers._polling import register, running_pollers
from airflow_provider_oes.triggers._polling.settlements import SETTLEMENTS
from airflow_provider_oes.triggers._settlement_events import read_settlement_event, settled_event
from airflow_provider_oes.triggers._shared import connections
from airflow_provider_oes.triggers.settlement import SettlementStatusTrigger
from tests._settlement_factories import SETTLEMENT_ID, settlement_record, transfer_record
from tests.triggers._support import first_event, make_trigger, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

SETTLEMENTS_SUFFIX = "/clients/settlements"
WINDOW_PARTNER = "3c3c3c3c-3c3c-4c3c-8c3c-3c3c3c3c3c3c"


def _trigger(sim: OESSimulator, settlement_id: str, conn_id: str, **kwargs: Any) -> SettlementStatusTrigger:
    kwargs.setdefault("poll_interval", 0.05)
    return SettlementStatusTrigger(settlement_id, sim.enterprise_id, conn_id, **kwargs)


def _settlement_requests(sim: OESSimulator) -> tuple[list[list[str]], list[str]]:
    """The settlements-list requests (their ``settlementIds``) and the GETs by id (their ids) the simulator saw."""
    lists, singles = [], []
    for _, path, query, _ in sim.requests:
        if path.endswith(SETTLEMENTS_SUFFIX):
            lists.append(parse_qs(query).get("settlementIds", []))
        elif SETTLEMENTS_SUFFIX + "/" in path:
            singles.append(path.rsplit("/", 1)[-1])
    return lists, singles


def _sensor(settlement_id: str, conn_id: str, **kwargs: Any) -> SettlementStatusSensor:
    return SettlementStatusSensor(
        task_id="wait", settlement_id=settlement_id, oes_conn_id=conn_id, poke_interval=0.05, **kwargs
    )


# ----------------------------------------------------------------------------- serialization


def test_serialize_round_trips_to_plain_data() -> None:
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    trigger = SettlementStatusTrigger(SETTLEMENT_ID, "ent-1", "my_oes", 7.5, fail_on_failed=True)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_oes.triggers.settlement.SettlementStatusTrigger"
    assert kwargs == {
        "settlement_id": SETTLEMENT_ID,
        "enterprise_id": "ent-1",
        "oes_conn_id": "my_oes",
        "poll_interval": 7.5,
        "fail_on_failed": True,
        "end_from_trigger": False,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert deserialize(serialize(kwargs)) == kwargs
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert "fail_on_failed=True" in repr(rebuilt)


# ----------------------------------------------------------------------------- the event contract


def _details(status: str, **overrides: Any) -> dict[str, Any]:
    return {
        "settlement": settlement_record(status, **overrides),
        "settlementTransfers": [transfer_record(1)],
        "settlingDisputes": [],
        "settlementDisputes": [],
    }


def test_read_settlement_event_trusts_only_a_final_settlement_of_the_one_asked_for() -> None:
    from airflow_provider_oes.settlement_models import SettlementDetails

    completed = settled_event(SettlementDetails.model_validate(_details("completed")), "ent-1")
    assert json.loads(json.dumps(completed)) == completed
    details = read_settlement_event(completed, settlement_id=SETTLEMENT_ID, enterprise_id="ent-1", fail_on_failed=False)
    assert details.settlement.is_completed
    assert details.to_json_dict()["settlementTransfers"][0]["quantity"] == "-250000000"

    failed = {"status": "settled", "settlement": _details("failed")}
    with pytest.raises(OESResponseError, match="'failed', which is not final"):
        read_settlement_event(failed, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=False)
    assert read_settlement_event(
        failed, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=True
    ).settlement.is_failed
    pending = {"status": "settled", "settlement": _details("pending")}
    with pytest.raises(OESResponseError, match="not final"):
        read_settlement_event(pending, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=True)
    other = "11111111-1111-4111-8111-111111111111"
    with pytest.raises(OESResponseError, match="sent settlement"):
        read_settlement_event(completed, settlement_id=other, enterprise_id=None, fail_on_failed=False)
    with pytest.raises(OESResponseError, match="unknown kind 'terminal'"):
        read_settlement_event(
            {"status": "terminal"}, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=False
        )
    with pytest.raises(OESResponseError, match="no event"):
        read_settlement_event(None, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=False)
    broken = {"status": "settled", "settlement": {**_details("completed"), "settlement": {"id": SETTLEMENT_ID}}}
    with pytest.raises(OESResponseError, match="not valid"):
        read_settlement_event(broken, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=False)
    error = {"status": "error", "error_type": "OESNotFoundError", "message": "settlement not found", "status_code": 404}
    with pytest.raises(OESNotFoundError, match="settlement not found"):
        read_settlement_event(error, settlement_id=SETTLEMENT_ID, enterprise_id=None, fail_on_failed=False)


# ----------------------------------------------------------------------------- outcomes against the simulator


async def test_completed_fires_with_its_transfers_read_once_it_is_final(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    settlement_id = oes_simulator.add_settlement(
        partner_id=WINDOW_PARTNER,
        pending_for_seconds=0.4,
        transfers=[{"currency": "ofctbtc", "quantity": "-98765432109876543210987654321", "usd_value": "125.5"}],
    )
    event = await first_event(_trigger(oes_simulator, settlement_id, conn_id))

    assert event["status"] == "settled"
    assert event["enterprise_id"] == oes_simulator.enterprise_id
    assert event["settlement"]["settlement"]["status"] == "completed"
    assert event["settlement"]["settlementTransfers"][0]["quantity"] == "-98765432109876543210987654321"
    assert event["settlement"]["settlementTransfers"][0]["usdValue"] == "125.5"
    assert json.loads(json.dumps(event)) == event
    lists, singles = _settlement_requests(oes_simulator)
    assert len(lists) >= 2  # pending at first, asked about in its id batch
    assert all(ids == [settlement_id] for ids in lists)
    assert singles == [settlement_id]  # the GET with its transfers only once it was final
    assert running_pollers(SETTLEMENTS.name) == {}

    sensor = _sensor(settlement_id, conn_id, deferrable=True)
    assert sensor.execute_complete({}, event) == event["settlement"]


async def test_rejected_fires_and_the_sensor_fails_without_retries(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    settlement_id = oes_simulator.add_settlement(
        final_status="rejected", settlement_type="onchain", final_reason="AML hit"
    )
    event = await first_event(_trigger(oes_simulator, settlement_id, conn_id))
    assert event["settlement"]["settlement"]["status"] == "rejected"
    with pytest.raises(SettlementRejectedError, match="AML hit"):
        _sensor(settlement_id, conn_id, deferrable=True).execute_complete({}, event)


async def test_failed_keeps_waiting_unless_fail_on_failed(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    settlement_id = oes_simulator.add_settlement(failed_for_seconds=0.5, failed_reason="collateral short")
    patient = asyncio.ensure_future(first_event(_trigger(oes_simulator, settlement_id, conn_id)))
    fast = await first_event(_trigger(oes_simulator, settlement_id, conn_id, fail_on_failed=True))

    assert fast["settlement"]["settlement"]["status"] == "failed"
    assert not patient.done()  # the same settlement, the same poller: only the fail-fast trigger got it
    with pytest.raises(SettlementFailedError, match="collateral short"):
        _sensor(settlement_id, conn_id, fail_on_failed=True, deferrable=True).execute_complete({}, fast)

    later = await asyncio.wait_for(patient, 20)
    assert later["settlement"]["settlement"]["status"] == "completed"


async def test_unknown_settlement_is_a_permanent_error_event(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    unknown = "00000000-0000-4000-8000-000000000000"
    event = await first_event(_trigger(oes_simulator, unknown, conn_id))
    assert event["status"] == "error"
    assert event["error_type"] == "OESNotFoundError"
    assert oes_simulator.token not in json.dumps(event)
    with pytest.raises(OESNotFoundError):
        _sensor(unknown, conn_id, deferrable=True).execute_complete({}, event)


async def test_a_bad_id_or_interval_is_an_error_event_without_a_request(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    bad_id = await first_event(_trigger(oes_simulator, "not-a-uuid", conn_id))
    assert bad_id["error_type"] == "OESInvalidRequestError"
    assert "not-a-uuid" in bad_id["message"]
    bad_interval = await first_event(_trigger(oes_simulator, SETTLEMENT_ID, conn_id, poll_interval=0))
    assert "poll_interval" in bad_interval["message"]
    assert oes_simulator.request_count == 0


async def test_transient_errors_keep_the_trigger_waiting(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    settlement_id = oes_simulator.add_settlement(final_status="completed")
    oes_simulator.inject_fault("500", count=2)
    event = await first_event(_trigger(oes_simulator, settlement_id, conn_id))
    assert event["settlement"]["settlement"]["status"] == "completed"


async def test_batches_and_the_connection_shared_with_the_allocation_triggers(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(batch_size=2)
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    settlements = [oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, pending_for_seconds=0.6) for _ in range(3)]
    allocation_id = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=50)
    tasks = [asyncio.ensure_future(first_event(_trigger(oes_simulator, s, conn_id))) for s in settlements]
    allocation_task = asyncio.ensure_future(first_event(make_trigger(oes_simulator, allocation_id, conn_id)))
    await wait_for(lambda: (conn := connections.find(conn_id)) is not None and conn.users == 2, "both pollers")
    # One client and one rate limiter for both pollers of this connection: the one poller, with two resources.
    assert list(connections.active_clients()) == [conn_id]
    assert set(running_pollers(SETTLEMENTS.name)) == {(conn_id, oes_simulator.enterprise_id)}
    assert set(running_pollers()) == {(conn_id, oes_simulator.enterprise_id)}
    assert type(running_pollers(SETTLEMENTS.name)[(conn_id, oes_simulator.enterprise_id)]) is type(
        running_pollers()[(conn_id, oes_simulator.enterprise_id)]
    )

    events = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert [e["settlement"]["settlement"]["id"] for e in events] == settlements
    lists, _ = _settlement_requests(oes_simulator)
    assert max(len(ids) for ids in lists) == 2  # the connection's batch size
    assert {i for ids in lists for i in ids} == set(settlements)
    assert (await asyncio.wait_for(allocation_task, 20))["allocation"]["status"] == "cleared"


# ----------------------------------------------------------------------------- the sensor's deferrable mode


def test_sensor_defers_with_its_trigger_after_a_first_check(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    oes_simulator.add_partner(WINDOW_PARTNER, dispute_window_minutes=60)
    settlement_id = oes_simulator.add_settlement(partner_id=WINDOW_PARTNER, final_status="pending")
    sensor = _sensor(settlement_id, conn_id, deferrable=True, timeout=123, fail_on_failed=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, SettlementStatusTrigger)
    assert trigger.serialize()[1] == {
        "settlement_id": settlement_id,
        "enterprise_id": oes_simulator.enterprise_id,
        "oes_conn_id": conn_id,
        "poll_interval": 0.05,
        "fail_on_failed": True,
        "end_from_trigger": False,
    }
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None
    assert deferred.value.timeout.total_seconds() == 123
    assert oes_simulator.request_count == 1


def test_sensor_final_at_the_first_check_does_not_defer(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    completed = oes_simulator.add_settlement(final_status="completed")
    assert _sensor(completed, conn_id, deferrable=True).execute({})["settlement"]["status"] == "completed"
    rejected = oes_simulator.add_settlement(final_status="rejected", settlement_type="onchain")
    with pytest.raises(SettlementRejectedError):
        _sensor(rejected, conn_id, deferrable=True).execute({})
    with pytest.raises(AirflowSkipException):
        _sensor(rejected, conn_id, deferrable=True, soft_fail=True).execute({})


def test_start_from_trigger_hands_the_triggerer_its_kwargs() -> None:
    from airflow_provider_oes._task import airflow_renders_start_trigger_templates

    sensor = SettlementStatusSensor(
        task_id="wait", settlement_id="{{ params.sid }}", start_from_trigger=True, poke_interval=9, timeout=60
    )
    assert sensor.deferrable
    if not airflow_renders_start_trigger_templates():
        assert sensor.start_from_trigger is False
        return
    assert sensor.start_from_trigger is True
    args = sensor.start_trigger_args
    assert args is not None
    assert args.trigger_cls == "airflow_provider_oes.triggers.settlement.SettlementStatusTrigger"
    assert args.trigger_kwargs == {
        "settlement_id": "{{ params.sid }}",
        "enterprise_id": "",
        "oes_conn_id": "oes_default",
        "poll_interval": 9.0,
        "fail_on_failed": False,
        "end_from_trigger": False,
    }
    assert args.next_method == "execute_complete"
    assert args.timeout is not None
    assert args.timeout.total_seconds() == 60


def test_end_from_trigger_needs_a_deferred_wait() -> None:
    assert SettlementStatusSensor(task_id="a", settlement_id="x", end_from_trigger=True).end_from_trigger is False
    assert (
        SettlementStatusSensor(task_id="b", settlement_id="x", end_from_trigger=True, deferrable=True).end_from_trigger
        is True
    )


async def test_end_from_trigger_pushes_the_xcom_and_ends_the_task_only_on_completed(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    from airflow_provider_oes.triggers import _task_end

    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr(_task_end, "push_return_value", lambda ti, value: pushed.append(value))
    conn_id = make_connection()
    completed = oes_simulator.add_settlement(final_status="completed")
    rejected = oes_simulator.add_settlement(final_status="rejected", settlement_type="onchain")

    async def run(settlement_id: str) -> Any:
        trigger = _trigger(oes_simulator, settlement_id, conn_id, end_from_trigger=True)
        trigger.task_instance = SimpleNamespace(dag_id="d", task_id="wait", run_id="r", map_index=-1)  # type: ignore[assignment]
        return [event async for event in trigger.run()]

    ended = await run(completed)
    assert len(ended) == 1
    assert isinstance(ended[0], TaskSuccessEvent)
    assert len(pushed) == 1
    assert pushed[0]["settlement"] == oes_simulator.get_settlement_record(completed)
    assert pushed[0]["settlementTransfers"]
    resumed = await run(rejected)
    assert not isinstance(resumed[0], TaskSuccessEvent)
    assert resumed[0].payload["settlement"]["settlement"]["status"] == "rejected"
    assert len(pushed) == 1


async def test_a_sweep_costs_one_list_request_per_batch_and_no_get_while_pending(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    from airflow_provider_oes.triggers._polling.id_batches import IdBatchStrategy

    conn_id = make_connection(batch_size=200)
    ids = [oes_simulator.add_settlement(final_status="pending") for _ in range(450)]
    waiters = [
        await register(conn_id, oes_simulator.enterprise_id, i, 3600.0, resource=SETTLEMENTS, fail_fast=False)
        for i in ids
    ]
    poller = running_pollers(SETTLEMENTS.name)[(conn_id, oes_simulator.enterprise_id)]
    await wait_for(lambda: poller.sweeps == 1, "the first sweep")
    assert poller.strategy == "id_batches"
    strategy = poller.running_strategy
    assert isinstance(strategy, IdBatchStrategy)
    before = len(oes_simulator.requests)
    await strategy.sweep()
    lists, singles = _settlement_requests(oes_simulator)
    assert len(oes_simulator.requests) - before == 3  # ceil(450 / 200) list requests, nothing else
    assert sorted(len(batch) for batch in lists[-3:]) == [50, 200, 200]
    assert singles == []
    assert not any(w.future.done() for w in waiters)
    for waiter in waiters:
        waiter.cancel()
    await wait_for(
        lambda: not running_pollers(SETTLEMENTS.name) and connections.find(conn_id) is None, "the poller to stop"
    )


async def test_a_refused_token_fails_every_waiting_trigger_without_showing_it(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(token="not-the-sim-token-0123456789")
    ids = [oes_simulator.add_settlement(final_status="pending") for _ in range(2)]
    events = await asyncio.wait_for(
        asyncio.gather(*(first_event(_trigger(oes_simulator, i, conn_id)) for i in ids)), 20
    )
    assert [e["error_type"] for e in events] == ["OESAuthenticationError", "OESAuthenticationError"]
    assert all(e["status_code"] == 401 for e in events)
    assert "not-the-sim-token-0123456789" not in json.dumps(events)
    lists, singles = _settlement_requests(oes_simulator)
    assert len(lists) == 1
    assert sorted(lists[0]) == sorted(ids)
    assert singles == []
