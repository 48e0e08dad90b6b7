"""The shared poller behind the trigger: batching, errors, sharing, cancellation, rate limits, logging.

Against the local simulator (real HTTP on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_oes.exceptions import OESResponseError
from airflow_provider_oes.triggers import _polling as polling
from airflow_provider_oes.triggers._events import error_from_payload
from airflow_provider_oes.triggers._shared import connections
from tests.triggers._support import (
    first_event,
    list_requests,
    make_trigger,
    single_requests,
    wait_for,
    wait_idle,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration


async def test_transient_errors_keep_polling(oes_simulator: OESSimulator, make_connection: Callable[..., str]) -> None:
    conn_id = make_connection(max_retries=0)
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    oes_simulator.inject_fault("503", count=2)
    oes_simulator.inject_fault("drop", count=1)
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["status"] == "terminal"
    assert event["allocation"]["status"] == "cleared"
    assert len(list_requests(oes_simulator)) == 4  # 3 failed sweeps, then the answer
    assert oes_simulator.faults == []


async def test_unknown_status_is_never_terminal(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    oes_simulator.inject_fault("unknown_status", count=3, allocation_id=allocation_id)
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["allocation"]["status"] == "cleared"
    assert len(list_requests(oes_simulator)) == 4


@pytest.mark.parametrize(
    ("fault", "on_the_allocation", "needle"),
    [
        pytest.param("wrong_types", True, "is not a valid allocation", id="invalid-record"),
        pytest.param("non_json", False, "not JSON", id="non-json-body"),
    ],
)
async def test_bad_answer_gives_response_error(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], fault: str, on_the_allocation: bool, needle: str
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    if on_the_allocation:
        oes_simulator.inject_fault(fault, count=1, allocation_id=allocation_id)
    else:
        oes_simulator.inject_fault(fault, count=1)
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["status"] == "error"
    assert event["error_type"] == "OESResponseError"
    assert event["allocation_id"] == allocation_id
    assert needle in event["message"]
    assert isinstance(error_from_payload(event), OESResponseError)


async def test_record_with_another_id_is_confirmed_with_single_get(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    """A list answer that does not contain the id asked for is never trusted: the single GET decides."""
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="released")
    oes_simulator.inject_fault("wrong_id", count=1, allocation_id=allocation_id)
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["status"] == "terminal"
    assert event["allocation"]["id"] == allocation_id
    assert event["allocation"]["status"] == "released"
    assert len(list_requests(oes_simulator)) == 1
    assert len(single_requests(oes_simulator)) == 1


async def test_batching_off_sends_one_single_get_per_allocation(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(batching=False)
    ids = [oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1) for _ in range(5)]
    events = await asyncio.gather(*(first_event(make_trigger(oes_simulator, i, conn_id)) for i in ids))
    assert [e["allocation"]["id"] for e in events] == ids
    assert list_requests(oes_simulator) == []
    paths = [r[1].rsplit("/", 1)[-1] for r in single_requests(oes_simulator)]
    assert sorted(paths) == sorted(ids * 2)  # reserved once, then cleared: two GETs each


async def test_two_triggers_for_the_same_allocation_both_fire(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1)
    first, second = await asyncio.gather(
        first_event(make_trigger(oes_simulator, allocation_id, conn_id)),
        first_event(make_trigger(oes_simulator, allocation_id, conn_id)),
    )
    assert first == second
    assert first["allocation"]["status"] == "cleared"
    for request in list_requests(oes_simulator):
        assert parse_qs(request[2])["allocationIds"] == [allocation_id]  # asked once per sweep, not twice


# ----------------------------------------------------------------------------- sharing and cancellation


async def test_one_client_per_connection_shared_across_enterprises(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    ids = [oes_simulator.add_allocation(final_status="reserved") for _ in range(3)]
    other = oes_simulator.add_allocation(final_status="reserved", enterprise_id="ent-two")
    tasks = [asyncio.create_task(first_event(make_trigger(oes_simulator, i, conn_id))) for i in ids]
    tasks.append(asyncio.create_task(first_event(make_trigger(oes_simulator, other, conn_id, enterprise_id="ent-two"))))

    def both_pollers_have_their_waiters() -> bool:
        first = polling.get_poller(conn_id, oes_simulator.enterprise_id)
        second = polling.get_poller(conn_id, "ent-two")
        return (
            first is not None
            and second is not None
            and set(first.waiters) == set(ids)
            and bool(second.waiters)
            and first.connected
            and second.connected
        )

    await wait_for(both_pollers_have_their_waiters, "both pollers to hold their triggers")
    clients = connections.active_clients()
    assert list(clients) == [conn_id]
    first = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    second = polling.get_poller(conn_id, "ent-two")
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.connection.client is second.connection.client is clients[conn_id]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_idle()
    assert clients[conn_id].is_closed


async def test_cancelled_trigger_leaves_the_shared_poller_consistent(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    stays = oes_simulator.add_allocation(final_status="reserved")
    leaves = oes_simulator.add_allocation(final_status="reserved")
    staying = asyncio.create_task(first_event(make_trigger(oes_simulator, stays, conn_id)))
    leaving = asyncio.create_task(first_event(make_trigger(oes_simulator, leaves, conn_id)))

    def poller_with_both() -> polling.Poller[Any] | None:
        poller = polling.get_poller(conn_id, oes_simulator.enterprise_id)
        return poller if poller is not None and set(poller.waiters) == {stays, leaves} and poller.connected else None

    await wait_for(poller_with_both, "one poller waiting for both allocations")
    poller = poller_with_both()
    assert poller is not None
    client = poller.connection.client

    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert set(poller.waiters) == {stays}
    assert not client.is_closed  # still used by the other trigger

    # A sweep already sent may still carry the cancelled id: let it finish, then watch two whole sweeps.
    sweeps = poller.sweeps
    await wait_for(lambda: poller.sweeps > sweeps, "the sweep in flight to finish")
    oes_simulator.reset_counts()
    sweeps = poller.sweeps
    await wait_for(lambda: poller.sweeps >= sweeps + 2, "two more sweeps")
    asked = {i for r in list_requests(oes_simulator) for i in parse_qs(r[2])["allocationIds"][0].split(",")}
    assert asked == {stays}  # the cancelled id is not polled any more

    oes_simulator.set_status(stays, "cleared")
    event = await asyncio.wait_for(staying, 10)
    assert event["allocation"]["id"] == stays
    await wait_idle()
    assert client.is_closed


async def test_cancelling_the_only_trigger_stops_the_poller_and_closes_the_client(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="reserved")
    task = asyncio.create_task(first_event(make_trigger(oes_simulator, allocation_id, conn_id, poll_interval=30)))
    await wait_for(lambda: oes_simulator.request_count >= 1, "the first check")
    poller = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    assert poller is not None
    client = poller.connection.client
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The poller wakes from its 30 s sleep at once: well within the wait's bound.
    await wait_idle(timeout=5)
    assert client.is_closed
    # A new trigger afterwards gets a fresh poller and client.
    oes_simulator.set_status(allocation_id, "cleared")
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["allocation"]["status"] == "cleared"


async def test_trigger_arriving_while_the_last_one_leaves_gets_a_fresh_poller(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection()
    allocation_id = oes_simulator.add_allocation(final_status="reserved")
    leaving = asyncio.create_task(first_event(make_trigger(oes_simulator, allocation_id, conn_id)))
    await wait_for(lambda: polling.get_poller(conn_id, oes_simulator.enterprise_id), "the first poller")
    old = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    assert old is not None
    leaving.cancel()
    arriving = asyncio.create_task(first_event(make_trigger(oes_simulator, allocation_id, conn_id)))
    await asyncio.gather(leaving, return_exceptions=True)

    def fresh_poller() -> polling.Poller[Any] | None:
        new = polling.get_poller(conn_id, oes_simulator.enterprise_id)
        return new if new is not None and new is not old and new.waiters else None

    await wait_for(fresh_poller, "a fresh poller for the arriving trigger")
    new = fresh_poller()
    assert new is not None
    assert set(new.waiters) == {allocation_id}
    oes_simulator.set_status(allocation_id, "released")
    event = await asyncio.wait_for(arriving, 10)
    assert event["allocation"]["status"] == "released"
    await wait_idle()


async def test_last_trigger_leaving_stops_a_poller_queued_behind_the_rate_limiter(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    """1 request per 30 s: the poller waits in the limiter; cancelling the trigger must not wait for it."""
    conn_id = make_connection(batching=False, rate_limit_requests=1, rate_limit_period=30)
    ids = [oes_simulator.add_allocation(final_status="reserved") for _ in range(2)]
    tasks = [asyncio.create_task(first_event(make_trigger(oes_simulator, i, conn_id))) for i in ids]
    await wait_for(lambda: oes_simulator.request_count >= 1, "the first GET")
    poller = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    assert poller is not None
    client = poller.connection.client
    limiter = poller.connection.limiter
    await wait_for(lambda: limiter.waited_seconds > 0, "the second GET to queue behind the limiter")
    assert oes_simulator.request_count == 1  # the second GET is held by the limiter
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_idle(timeout=5)  # far less than the limiter's 30 s
    assert client.is_closed
    assert oes_simulator.request_count == 1


# ----------------------------------------------------------------------------- rate limiting


async def test_connection_rate_limit_holds_across_sweeps(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    """Batching off, 6 allocations, a limit of 4 per 0.5 s: sweeps slow down instead of exceeding it."""
    conn_id = make_connection(batching=False, rate_limit_requests=4, rate_limit_period=0.5)
    ids = [oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=2) for _ in range(6)]
    events = await asyncio.gather(*(first_event(make_trigger(oes_simulator, i, conn_id, 0.01)) for i in ids))
    assert all(e["allocation"]["status"] == "cleared" for e in events)
    stamps = sorted(r[3] for r in oes_simulator.requests)
    assert len(stamps) == 18
    for i in range(len(stamps) - 4):
        assert stamps[i + 4] - stamps[i] >= 0.5 - 0.02


async def test_429_pauses_the_connection_for_retry_after(
    oes_simulator: OESSimulator, make_connection: Callable[..., str]
) -> None:
    conn_id = make_connection(max_retries=1, retry_max_wait=5)
    allocation_id = oes_simulator.add_allocation(final_status="cleared")
    oes_simulator.inject_fault("429", count=1, retry_after=0.6)
    event = await first_event(make_trigger(oes_simulator, allocation_id, conn_id))
    assert event["allocation"]["status"] == "cleared"
    first, second = sorted(r[3] for r in oes_simulator.requests)
    assert second - first >= 0.6 - 0.02


# ----------------------------------------------------------------------------- many triggers


async def test_200_triggers_share_batched_requests(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweeps each trigger joined after: on a loaded machine 200 triggers take more than one sweep to join.
    joined_after: list[int] = []
    real_add = polling.Poller.add

    def add(self: polling.Poller[Any], *args: Any, **kwargs: Any) -> Any:
        joined_after.append(self.sweeps)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(polling.Poller, "add", add)
    batch_size = 50
    conn_id = make_connection(batch_size=batch_size)
    rng = random.Random(4)
    expected: dict[str, str] = {}
    for n in range(200):
        final = "cleared" if n % 2 else "released"
        allocation_id = oes_simulator.add_allocation(final_status=final, reserved_for_reads=rng.randint(0, 4))
        expected[allocation_id] = final
    triggers = [make_trigger(oes_simulator, i, conn_id, poll_interval=0.1) for i in expected]
    gathered = asyncio.gather(*(first_event(t) for t in triggers))
    await wait_for(lambda: polling.get_poller(conn_id, oes_simulator.enterprise_id), "the shared poller to start")
    poller = polling.get_poller(conn_id, oes_simulator.enterprise_id)
    assert poller is not None
    events = await gathered

    assert {e["allocation"]["id"]: e["allocation"]["status"] for e in events} == expected
    assert all(e["status"] == "terminal" for e in events)
    confirmations = len(single_requests(oes_simulator))
    assert confirmations == 0  # every id exists, so the list always had it
    lists = list_requests(oes_simulator)
    per_sweep = math.ceil(200 / batch_size)
    # One sweep per poll interval, and at most ceil(200 / batch size) list requests per sweep.
    # Reserved for at most 4 reads, final on the next, counted from the sweep the last trigger joined after;
    # +1 as a sweep may be under way when it joins.
    assert len(joined_after) == 200
    assert 2 <= poller.sweeps <= max(joined_after) + 6
    assert len(lists) <= poller.sweeps * per_sweep + confirmations
    assert len(lists) >= per_sweep + 1
    for request in lists:
        assert len(parse_qs(request[2])["allocationIds"][0].split(",")) <= batch_size
    await wait_idle()


# ----------------------------------------------------------------------------- operator-visible logging


async def test_poller_logs_each_sweep_with_its_request_count(
    oes_simulator: OESSimulator, make_connection: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = make_connection(batch_size=2)
    # Three final at the second check, one at the fourth: the sweeps in between log finals while one still waits
    # (the sweep that ends the last wait may be cut short: nobody is left to report to).
    ids = [oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=1) for _ in range(3)]
    ids.append(oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=3))
    caplog.set_level("INFO", logger="airflow_provider_oes.triggers._polling")

    events = await asyncio.gather(*(first_event(make_trigger(oes_simulator, i, conn_id)) for i in ids))

    assert [e["status"] for e in events] == ["terminal"] * 4
    messages = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_oes.triggers._polling"]
    assert any("batches of 2 ids per list request" in m for m in messages), messages
    sweeps = [
        tuple(int(n) for n in match.groups())
        for m in messages
        if (match := re.search(r"checked (\d+) allocations with (\d+) requests .* (\d+) became final", m))
    ]
    assert sweeps, messages
    # Each sweep asks about its allocations in batches of 2 (no confirmations needed here), and every
    # allocation is reported final exactly once. The last sweep may be cut short when the last trigger leaves.
    assert all(requests == math.ceil(checked / 2) for checked, requests, _ in sweeps), sweeps
    assert sum(final for _, _, final in sweeps) <= 4
    assert any(final > 0 for _, _, final in sweeps), sweeps
    assert oes_simulator.token not in "\n".join(messages)
