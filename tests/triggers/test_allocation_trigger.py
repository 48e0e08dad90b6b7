"""AllocationStatusTrigger: serialization and the one event it fires, against the local simulator (real HTTP)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.exceptions import AllocationReleasedError, OESNotFoundError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.triggers._support import first_event, list_requests, make_trigger, single_requests, wait_idle

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------------------- serialization


def test_serialize_round_trips_to_plain_data() -> None:
    from airflow.sdk._shared.module_loading import import_string

    trigger = AllocationStatusTrigger(
        allocation_id="a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
        enterprise_id="ent-1",
        oes_conn_id="my_oes",
        poll_interval=7.5,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_oes.triggers.allocation.AllocationStatusTrigger"
    assert kwargs == {
        "allocation_id": "a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab",
        "enterprise_id": "ent-1",
        "oes_conn_id": "my_oes",
        "poll_interval": 7.5,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    rebuilt = import_string(classpath)(**kwargs)
    assert isinstance(rebuilt, AllocationStatusTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_serialize_survives_airflow_serde() -> None:
    from airflow.sdk.serde import deserialize, serialize

    trigger = AllocationStatusTrigger("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "ent-1", "my_oes", 3.0)
    _, kwargs = trigger.serialize()
    assert deserialize(serialize(kwargs)) == kwargs


# ----------------------------------------------------------------------------- outcomes


async def test_cleared_fires_terminal_event_and_sensor_succeeds(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(
        final_status="cleared", reserved_for_reads=2, quantity="12345678901234567890123"
    )
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))

    assert event["status"] == "terminal"
    assert event["enterprise_id"] == oes_simulator.enterprise_id
    assert event["allocation"] == oes_simulator.get_record(allocation_id)
    assert event["allocation"]["status"] == "cleared"
    assert event["allocation"]["amount"]["quantity"] == "12345678901234567890123"
    assert json.loads(json.dumps(event)) == event
    # Polled with the list endpoint (3 sweeps: reserved, reserved, cleared), never the single GET.
    assert len(list_requests(oes_simulator)) == 3
    assert single_requests(oes_simulator) == []

    sensor = AllocationStatusSensor(task_id="s", allocation_id=allocation_id, oes_conn_id=conn_id, deferrable=True)
    assert sensor.execute_complete({}, event) == oes_simulator.get_record(allocation_id)
    await wait_idle()


async def test_released_fires_terminal_event_and_sensor_fails_with_reason(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(
        final_status="released", reserved_for_reads=1, final_reason="partner rejected the allocation"
    )
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))

    assert event["status"] == "terminal"
    assert event["allocation"]["status"] == "released"
    sensor = AllocationStatusSensor(task_id="s", allocation_id=allocation_id, oes_conn_id=conn_id, deferrable=True)
    with pytest.raises(AllocationReleasedError, match="partner rejected the allocation"):
        sensor.execute_complete({}, event)


async def test_unknown_allocation_is_confirmed_with_single_get_then_404_error_event(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    missing = "0b5e2a9c-1111-4222-8333-444455556666"
    event = await first_event(make_trigger(oes_simulator, missing, conn_id))

    assert event["status"] == "error"
    assert event["error_type"] == "OESNotFoundError"
    assert event["status_code"] == 404
    assert event["allocation_id"] == missing
    assert len(list_requests(oes_simulator)) == 1
    assert [r[1].rsplit("/", 1)[-1] for r in single_requests(oes_simulator)] == [missing]
    sensor = AllocationStatusSensor(task_id="s", allocation_id=missing, oes_conn_id=conn_id, deferrable=True)
    with pytest.raises(OESNotFoundError, match=missing):
        sensor.execute_complete({}, event)


async def test_wrong_token_gives_authentication_error_without_the_token(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    secret = "wrong-token-6c1f0e9a"
    conn_id = make_connection(token=secret)
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))

    assert event["status"] == "error"
    assert event["error_type"] == "OESAuthenticationError"
    assert event["status_code"] == 401
    assert secret not in json.dumps(event)
    assert oes_simulator.request_count == 1  # permanent: not retried


async def test_unlicensed_enterprise_gives_permission_error(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    from airflow_provider_oes.testing.simulator import UNLICENSED_ENTERPRISE_ID

    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    trigger = make_trigger(oes_simulator, allocation_id, conn_id, enterprise_id=UNLICENSED_ENTERPRISE_ID)
    event = await first_event(trigger)
    assert event["error_type"] == "OESPermissionDeniedError"
    assert event["status_code"] == 403
    assert event["enterprise_id"] == UNLICENSED_ENTERPRISE_ID


@pytest.mark.parametrize(
    ("allocation_id", "enterprise_id", "poll_interval", "needle"),
    [
        ("not-a-uuid", "sim-enterprise", 1.0, "'not-a-uuid'"),
        ("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "..", 1.0, "'..'"),
        ("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "sim-enterprise", 0, "poll_interval"),
        ("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "sim-enterprise", float("nan"), "poll_interval"),
    ],
)
async def test_bad_arguments_give_invalid_request_event_without_any_request(
    oes_simulator: OESSimulator,
    make_connection: Callable[..., str],
    allocation_id: str,
    enterprise_id: str,
    poll_interval: float,
    needle: str,
) -> None:
    conn_id = make_connection()
    trigger = AllocationStatusTrigger(allocation_id, enterprise_id, conn_id, poll_interval)
    event = await first_event(trigger)
    assert event["error_type"] == "OESInvalidRequestError"
    assert needle in event["message"]
    assert oes_simulator.request_count == 0


async def test_missing_connection_gives_error_event(oes_simulator: OESSimulator) -> None:
    trigger = AllocationStatusTrigger("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab", "sim-enterprise", "no_such_conn", 1.0)
    event = await first_event(trigger)
    assert event["status"] == "error"
    assert "no_such_conn" in event["message"]
    assert oes_simulator.request_count == 0
    await wait_idle()


async def test_triggers_starting_together_share_one_connection_read_and_its_error(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_oes.triggers._shared import connections

    reads: list[str] = []
    real_load = connections.load_settings

    async def counted_load(conn_id: str) -> Any:
        reads.append(conn_id)
        return await real_load(conn_id)

    monkeypatch.setattr(connections, "load_settings", counted_load)
    ids = [oes_simulator.add_allocation(final_status="cleared") for _ in range(50)]
    # The connection does not exist yet: the 50 register without waiting, the poller reads it once for all.
    events = await asyncio.gather(*(first_event(make_trigger(oes_simulator, i, "oes_later")) for i in ids))
    assert reads == ["oes_later"]
    assert [e["status"] for e in events] == ["error"] * 50
    assert [e["allocation_id"] for e in events] == ids
    assert all(e["error_type"] == "OESInvalidRequestError" and "oes_later" in e["message"] for e in events)
    assert oes_simulator.request_count == 0
    await wait_idle()
    # Defined now: the next trigger reads it again (the failed read was not kept) and gets its allocation.
    make_connection(conn_id="oes_later")
    event = await first_event(make_trigger(oes_simulator, ids[0], "oes_later"))
    assert event["status"] == "terminal"
    assert event["allocation"]["status"] == "cleared"
    assert reads == ["oes_later", "oes_later"]
    await wait_idle()


async def test_registering_never_suspends_the_trigger(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    from airflow_provider_oes.triggers import _polling as polling
    from airflow_provider_oes.triggers._polling.allocations import ALLOCATIONS

    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    # Run to completion in one step, as 100,000 triggers starting together each do: nothing of theirs waits
    # on the connection lock (the poller's task reads the connection).
    registering = polling.register(conn_id, oes_simulator.enterprise_id, allocation_id, 0.05, resource=ALLOCATIONS)
    with pytest.raises(StopIteration) as done:
        registering.send(None)  # a coroutine that suspends returns here instead of raising StopIteration
    registration = done.value.value
    assert registration.allocation_id == allocation_id
    assert (await asyncio.wait_for(registration.wait(), 20))["allocation"]["status"] == "cleared"
    registration.cancel()
    await wait_idle()


async def test_bad_connection_extra_gives_error_event(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(batch_size=0)
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["error_type"] == "OESInvalidRequestError"
    assert "batch_size" in event["message"]
    assert oes_simulator.request_count == 0
    await wait_idle()
