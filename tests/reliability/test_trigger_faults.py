"""The deferrable path under faults: AllocationStatusTrigger (and its shared poller) against the simulator.

Transient faults keep the trigger polling until the truth arrives; permanent ones give an error event;
an unknown status is never final; another allocation's ``cleared`` record never becomes success; the token
appears in no event and no output. Each case runs with batching on (list endpoint) and off (single GET).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.exceptions import AllocationReleasedError, OESError, OESResponseError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.testing.simulator import UNLICENSED_ENTERPRISE_ID
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.reliability._support import (
    ENTERPRISE_ID,
    FAST_EXTRAS,
    FIGURES,
    TOKEN,
    DripHandler,
    QuietHandler,
    assert_no_token,
    serve_http,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

ATTEMPTS = FAST_EXTRAS["max_retries"] + 1
BATCHING = pytest.mark.parametrize("batching", [True, False], ids=["batched", "single"])
FAST_LIMITS = {"rate_limit_requests": 100_000, "rate_limit_period": 60}
TRANSIENT: dict[str, dict[str, Any]] = {
    "500": {},
    "502": {},
    "503": {},
    "429": {},
    "429-retry-after": {"retry_after": 0.01},
    "slow": {"delay": 1.0},
    "drop": {},
}


async def _first_event(trigger: AllocationStatusTrigger, timeout: float = 15) -> dict[str, Any]:
    async def consume() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(consume(), timeout)


def _trigger(allocation_id: str, enterprise_id: str = ENTERPRISE_ID) -> AllocationStatusTrigger:
    return AllocationStatusTrigger(
        allocation_id=allocation_id, enterprise_id=enterprise_id, oes_conn_id="oes_default", poll_interval=0.05
    )


def _sensor_outcome(allocation_id: str, event: dict[str, Any]) -> str:
    """What the deferred sensor makes of the event: its one set of status rules."""
    sensor = AllocationStatusSensor(task_id="wait", allocation_id=allocation_id, deferrable=True)
    try:
        value = sensor.execute_complete({}, event)
    except AllocationReleasedError:
        return "failed"
    except OESError:
        return "failed"
    assert value["id"] == allocation_id
    assert value["status"] == "cleared"
    return "success"


@pytest.fixture
def conn(sim: OESSimulator, set_conn: Callable[..., str]) -> Callable[..., str]:
    def make(batching: bool, **extras: Any) -> str:
        return set_conn(sim.url, batching=batching, **FAST_LIMITS, **extras)

    return make


def _scan(event: dict[str, Any], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert_no_token(json.dumps(event), text)
    return text


@BATCHING
@pytest.mark.parametrize("name", list(TRANSIENT))
async def test_transient_faults_keep_the_trigger_polling_then_it_fires(
    name: str,
    batching: bool,
    sim: OESSimulator,
    conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    FIGURES["fault cases (trigger)"] += 1
    conn(batching)
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault(name.split("-")[0], count=ATTEMPTS, **TRANSIENT[name])
    event = await _first_event(_trigger(aid))
    assert event["status"] == "terminal"
    assert event["allocation"]["id"] == aid
    assert event["allocation"]["status"] == "cleared"
    assert sim.request_count >= ATTEMPTS + 1
    assert _sensor_outcome(aid, event) == "success"
    assert "will try again" in _scan(event, capfd, caplog)


@BATCHING
@pytest.mark.parametrize("kind", ["non_json", "missing_fields", "wrong_types"])
async def test_bad_bodies_give_an_error_event(
    kind: str,
    batching: bool,
    sim: OESSimulator,
    conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    FIGURES["fault cases (trigger)"] += 1
    conn(batching)
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault(kind, count=10)
    event = await _first_event(_trigger(aid))
    assert event["status"] == "error"
    assert event["error_type"] == "OESResponseError"
    assert event["allocation_id"] == aid
    with pytest.raises(OESResponseError):
        AllocationStatusSensor(task_id="wait", allocation_id=aid).execute_complete({}, event)
    _scan(event, capfd, caplog)


@BATCHING
@pytest.mark.parametrize(
    ("case", "error_type"),
    [("401", "OESAuthenticationError"), ("403", "OESPermissionDeniedError"), ("404", "OESNotFoundError")],
)
async def test_permanent_http_errors_give_an_error_event(
    case: str,
    error_type: str,
    batching: bool,
    sim: OESSimulator,
    conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    FIGURES["fault cases (trigger)"] += 1
    conn(batching, **({"token": "a-wrong-token-for-this-test"} if case == "401" else {}))
    aid = sim.add_allocation(final_status="cleared")
    enterprise = UNLICENSED_ENTERPRISE_ID if case == "403" else ENTERPRISE_ID
    if case == "404":
        aid = str(uuid.uuid4())
    event = await _first_event(_trigger(aid, enterprise))
    assert event["status"] == "error"
    assert event["error_type"] == error_type
    assert _sensor_outcome(aid, event) == "failed"
    _scan(event, capfd, caplog)


@BATCHING
async def test_unknown_status_is_never_terminal(
    batching: bool,
    sim: OESSimulator,
    conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    FIGURES["fault cases (trigger)"] += 1
    conn(batching)
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault("unknown_status", count=100_000)
    waiting = asyncio.ensure_future(_first_event(_trigger(aid), timeout=60))
    try:
        # However slow the machine: three answers with the unknown status, and still no event.
        async def three_answers() -> None:
            while sim.request_count < 3 and not waiting.done():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(three_answers(), 30)
        assert not waiting.done(), waiting.result()
        assert sim.request_count >= 3  # it kept polling
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    sim.clear_faults()
    event = await _first_event(_trigger(aid))
    assert event["allocation"]["status"] == "cleared"
    assert "pending_review" in _scan(event, capfd, caplog)


@BATCHING
async def test_another_allocations_cleared_record_is_never_success(
    batching: bool,
    sim: OESSimulator,
    conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    FIGURES["fault cases (trigger)"] += 1
    conn(batching)
    aid = sim.add_allocation(final_status="reserved")
    sim.inject_fault("wrong_id", count=100_000)
    event = await _first_event(_trigger(aid))
    assert event["status"] == "error"
    assert event["error_type"] == "OESResponseError"
    outcome = _sensor_outcome(aid, event)
    FIGURES["false successes"] += int(outcome == "success")
    assert outcome == "failed"
    _scan(event, capfd, caplog)


@BATCHING
async def test_one_wrong_id_answer_then_the_truth(batching: bool, sim: OESSimulator, conn: Callable[..., str]) -> None:
    """Another allocation's record never decides: batched, the single GET confirms and the truth decides;
    unbatched, the single GET's answer for another id is itself a permanent error. Never success."""
    FIGURES["fault cases (trigger)"] += 1
    conn(batching)
    aid = sim.add_allocation(final_status="released")
    sim.inject_fault("wrong_id", count=1)
    event = await _first_event(_trigger(aid))
    if batching:
        assert event["status"] == "terminal"
        assert event["allocation"]["id"] == aid
        assert event["allocation"]["status"] == "released"
    else:
        assert event["status"] == "error"
        assert event["error_type"] == "OESResponseError"
        assert event["allocation_id"] == aid
        assert "refusing" in event["message"]
    assert _sensor_outcome(aid, event) == "failed"


# ----------------------------------------------------------------------------- a server echoing the token
class _EchoHandler(QuietHandler):
    """Answers with the request's Authorization header pasted into the body."""

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        body: dict[str, Any]
        if "allocations/" in self.path:  # single GET: a 401 whose error text echoes the header
            status, body = 401, {"error": f"bad credentials: {auth}", "name": auth, "requestId": auth}
        else:  # list: a record whose id and status are the header
            status, body = 200, {"allocations": [{"id": auth.split()[-1], "status": auth}]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with serve_http(_EchoHandler) as url:
        yield url


@BATCHING
async def test_a_server_echoing_the_token_does_not_leak_it_through_the_trigger(
    batching: bool,
    echo_server: str,
    set_conn: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_conn(echo_server, batching=batching, **FAST_LIMITS)
    aid = str(uuid.uuid4())
    trigger = _trigger(aid)
    event = await _first_event(trigger)
    assert event["status"] == "error"
    assert TOKEN not in json.dumps(event)
    _scan(event, capfd, caplog)
    assert_no_token(repr(trigger), json.dumps(trigger.serialize()))
    with pytest.raises(OESError) as info:
        AllocationStatusSensor(task_id="wait", allocation_id=aid).execute_complete({}, event)
    assert_no_token(info.value)


@pytest.mark.timeout(30)
@BATCHING
async def test_a_dripping_body_is_a_transient_timeout_for_the_trigger_too(
    batching: bool, drip_server: str, set_conn: Callable[..., str]
) -> None:
    """Each byte within the read timeout, the answer never complete: the poller warns and keeps polling
    (no event), instead of one request blocking the shared poller for hours."""
    FIGURES["fault cases (trigger)"] += 1
    set_conn(drip_server, batching=batching, max_retries=0, **FAST_LIMITS)
    trigger = _trigger(str(uuid.uuid4()), "endless")
    hits_before = DripHandler.hits
    with pytest.raises(asyncio.TimeoutError):
        await _first_event(trigger, timeout=2.5)
    assert DripHandler.hits - hits_before >= 3  # it timed out each body and polled again
