"""One test per fault the simulator can inject, through OESHook and AllocationStatusSensor.poke over real HTTP.

Connection extras keep the suite fast (see ``FAST_EXTRAS``): 2 retries (3 attempts) per call, backoff
capped at 20 ms, a 0.3 s read timeout. Every test also scans what was printed and raised for the token.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests_mock
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_oes.exceptions import (
    AllocationReleasedError,
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESResponseError,
    OESServerError,
)
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.testing.simulator import UNLICENSED_ENTERPRISE_ID
from tests.reliability._support import FAST_EXTRAS, FIGURES, assert_no_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_oes.testing.simulator import OESSimulator

ATTEMPTS = FAST_EXTRAS["max_retries"] + 1

# kind -> (inject_fault kwargs, error class once retries run out, HTTP status on that error)
TRANSIENT: dict[str, tuple[dict[str, Any], type[OESError], int | None]] = {
    "500": ({}, OESServerError, 500),
    "502": ({}, OESServerError, 502),
    "503": ({}, OESServerError, 503),
    "429": ({}, OESRateLimitError, 429),
    "429-retry-after": ({"retry_after": 0.01}, OESRateLimitError, 429),
    "slow": ({"delay": 1.0}, OESConnectionError, None),
    "drop": ({}, OESConnectionError, None),
}
# kind -> words the error message must contain (it says what was wrong with the answer)
PERMANENT_BODY: dict[str, tuple[str, ...]] = {
    "non_json": ("not JSON", "<html>"),
    "missing_fields": ("not a valid allocation", "amount", "status"),
    "wrong_types": ("not a valid allocation", "quantity"),
    "wrong_id": ("refusing to use it",),
}


def _xcom(result: Any) -> dict[str, Any]:
    """The XCom value of a finished poke, checked to be the allocation's JSON object."""
    value = result.xcom_value
    assert isinstance(value, dict)
    return value


def _kind(name: str) -> str:
    return name.split("-", 1)[0]


def _sensor(allocation_id: str, **kwargs: Any) -> AllocationStatusSensor:
    return AllocationStatusSensor(task_id="wait", allocation_id=allocation_id, **kwargs)


def _count_case() -> None:
    FIGURES["fault cases (hook + sensor, one test each)"] += 1


@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_burst_within_retries_is_absorbed_by_the_hook(
    name: str, sim: OESSimulator, sim_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A burst one shorter than the attempts: the hook's retries hide it and return the real record."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    kwargs, _, _ = TRANSIENT[name]
    sim.inject_fault(_kind(name), count=ATTEMPTS - 1, **kwargs)
    hook = OESHook()
    allocation = hook.get_allocation(aid)
    assert allocation.id == aid
    assert allocation.is_cleared
    assert sim.request_count == ATTEMPTS
    assert_no_token(capsys.readouterr().out, capsys.readouterr().err, repr(hook))


@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_burst_past_retries_keeps_the_sensor_waiting(
    name: str, sim: OESSimulator, sim_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A burst as long as the attempts: the hook raises the transient error, the sensor warns and waits,
    and the next poke (burst over) sees the truth."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    kwargs, error_cls, status = TRANSIENT[name]
    sim.inject_fault(_kind(name), count=ATTEMPTS, **kwargs)
    with pytest.raises(error_cls) as info:
        OESHook().get_allocation(aid)
    assert info.value.transient
    assert info.value.status_code == status
    assert info.value.allocation_id == aid
    assert sim.request_count == ATTEMPTS

    sim.inject_fault(_kind(name), count=ATTEMPTS, **kwargs)
    sensor = _sensor(aid)
    first = sensor.poke({})
    assert first.is_done is False
    assert first.xcom_value is None
    assert sim.request_count == 2 * ATTEMPTS
    out = capsys.readouterr()
    assert "will try again" in out.out + out.err
    assert aid in out.out + out.err
    second = sensor.poke({})
    assert second.is_done is True
    assert _xcom(second)["id"] == aid
    assert _xcom(second)["status"] == "cleared"
    assert_no_token(out.out, out.err, info.value, capsys.readouterr().out)


@pytest.mark.parametrize("name", list(PERMANENT_BODY))
def test_bad_body_fails_at_once_without_retry(
    name: str, sim: OESSimulator, sim_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 200 whose body is not a valid allocation (or another one) is never retried and fails the sensor."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault(name, count=1)
    with pytest.raises(OESResponseError) as info:
        OESHook().get_allocation(aid)
    assert not info.value.transient
    assert sim.request_count == 1
    for word in PERMANENT_BODY[name]:
        assert word in str(info.value)
    assert aid in str(info.value)

    sim.inject_fault(name, count=1)
    with pytest.raises(OESResponseError):
        _sensor(aid).poke({})
    assert sim.request_count == 2
    assert_no_token(info.value, capsys.readouterr().out)


def test_wrong_id_is_never_success_even_though_it_says_cleared(sim: OESSimulator, sim_conn: str) -> None:
    """The ``wrong_id`` record is ``cleared``; the allocation asked for is still reserved."""
    _count_case()
    aid = sim.add_allocation(final_status="reserved")
    sim.inject_fault("wrong_id", count=5)
    sensor = _sensor(aid)
    for _ in range(5):
        with pytest.raises(OESResponseError, match="refusing"):
            sensor.poke({})
    assert sim.request_count == 5


def test_unknown_status_is_never_terminal(sim: OESSimulator, sim_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown ``status`` is read, warned about, and waited on; never success, never failure."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault("unknown_status", count=4)
    allocation = OESHook().get_allocation(aid)
    assert allocation.status == "pending_review"
    assert not allocation.has_known_status
    assert not allocation.is_cleared
    assert not allocation.is_terminal
    sensor = _sensor(aid)
    for _ in range(3):
        result = sensor.poke({})
        assert result.is_done is False
    out = capsys.readouterr().out
    assert "pending_review" in out
    assert "does not know" in out
    assert sim.request_count == 4
    assert sensor.poke({}).is_done is True
    assert_no_token(out)


def test_unknown_status_times_the_sensor_out(sim: OESSimulator, sim_conn: str) -> None:
    """Bounded by ``timeout``: an allocation stuck in an unknown status ends in a sensor timeout."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault("unknown_status", count=10_000)
    sensor = _sensor(aid, timeout=0.5, poke_interval=0.05, mode="poke")
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({})
    assert sim.request_count >= 2


def test_endless_transient_errors_time_the_sensor_out(
    sim: OESSimulator, sim_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An API that only ever answers 503: the sensor keeps waiting, then times out (never fails early)."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared")
    sim.inject_fault("503", count=10_000)
    sensor = _sensor(aid, timeout=0.5, poke_interval=0.05, mode="poke")
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor.execute({})
    assert sim.request_count >= 2 * ATTEMPTS
    assert_no_token(info.value, capsys.readouterr().out)


def test_transient_trouble_then_cleared_succeeds_through_execute(sim: OESSimulator, sim_conn: str) -> None:
    """Mixed transient faults across several pokes, then the truth: the task succeeds with the allocation."""
    _count_case()
    aid = sim.add_allocation(final_status="cleared", reserved_for_reads=2)
    for kind in ("500", "429", "drop", "503", "502", "drop"):
        sim.inject_fault(kind, count=1)
    sensor = _sensor(aid, timeout=30, poke_interval=0.01, mode="poke")
    result = sensor.execute({})
    assert result["id"] == aid
    assert result["status"] == "cleared"
    assert sim.request_count == 6 + 3  # six faults, two reserved reads, one cleared read


def test_released_fails_the_sensor_at_once(sim: OESSimulator, sim_conn: str) -> None:
    """``released`` is final: the sensor fails without retries, naming BitGo's reason."""
    _count_case()
    aid = sim.add_allocation(final_status="released", final_reason="insufficient balance")
    sim.inject_fault("500", count=ATTEMPTS - 1)
    sensor = _sensor(aid, timeout=30, poke_interval=0.01, mode="poke")
    with pytest.raises(AllocationReleasedError, match="insufficient balance"):
        sensor.execute({})
    assert sim.request_count == ATTEMPTS


def test_retry_after_is_honoured(sim: OESSimulator, set_conn: Callable[..., str]) -> None:
    """A 429 with ``Retry-After: 0.4`` delays the retry by at least 0.4 s (under a 5 s cap)."""
    _count_case()
    set_conn(sim.url, retry_max_wait=5)
    aid = sim.add_allocation()
    sim.inject_fault("429", count=1, retry_after=0.4)
    assert OESHook().get_allocation(aid).id == aid
    first, second = sim.requests
    assert second[3] - first[3] >= 0.38


def test_retry_after_is_capped(sim: OESSimulator, set_conn: Callable[..., str]) -> None:
    """A 429 asking for an hour waits only ``retry_max_wait`` (0.05 s here), not an hour."""
    _count_case()
    set_conn(sim.url, retry_max_wait=0.05)
    aid = sim.add_allocation()
    sim.inject_fault("429", count=1, retry_after=3600)
    started = time.monotonic()
    assert OESHook().get_allocation(aid).id == aid
    assert time.monotonic() - started < 5  # an hour was asked for; anything near it means no cap
    assert sim.request_count == 2


def test_retries_stop_at_max_retries(sim: OESSimulator, set_conn: Callable[..., str]) -> None:
    """``max_retries`` from the extras bounds the attempts exactly; 0 means a single try."""
    _count_case()
    aid = sim.add_allocation()
    for retries in (0, 4):
        set_conn(sim.url, max_retries=retries)
        sim.reset_counts()
        sim.inject_fault("502", count=100)
        with pytest.raises(OESServerError):
            OESHook().get_allocation(aid)
        assert sim.request_count == retries + 1
        sim.clear_faults()


@pytest.mark.parametrize(
    ("case", "error_cls", "status", "hint"),
    [
        ("401", OESAuthenticationError, 401, "access token"),
        ("403", OESPermissionDeniedError, 403, "license"),
        ("404", OESNotFoundError, 404, "check the allocation id"),
    ],
)
def test_permanent_http_errors_fail_at_once(
    case: str,
    error_cls: type[OESError],
    status: int,
    hint: str,
    sim: OESSimulator,
    set_conn: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """401/403/404 are never retried; the sensor fails on the first poke with what to fix."""
    _count_case()
    aid = sim.add_allocation()
    enterprise_id = None
    if case == "401":
        set_conn(sim.url, token="not-the-right-token-at-all")
    else:
        set_conn(sim.url)
    if case == "403":
        enterprise_id = UNLICENSED_ENTERPRISE_ID
    if case == "404":
        aid = str(uuid.uuid4())
    with pytest.raises(error_cls) as info:
        _sensor(aid, enterprise_id=enterprise_id).poke({})
    assert sim.request_count == 1
    assert info.value.status_code == status
    assert not info.value.transient
    assert hint.lower() in str(info.value).lower()
    assert_no_token(info.value, capsys.readouterr().out)


def test_http_400_fails_at_once(set_conn: Callable[..., str]) -> None:
    """The simulator cannot produce a 400 for a valid id, so this one is a requests-mock test."""
    _count_case()
    set_conn("https://oes.example.test")
    aid = str(uuid.uuid4())
    with requests_mock.Mocker() as mock:
        mock.get(
            requests_mock.ANY,
            status_code=400,
            json={"error": "Invalid UUID format", "name": "InvalidRequestError", "requestId": "r-1"},
        )
        with pytest.raises(OESInvalidRequestError) as info:
            _sensor(aid).poke({})
        assert mock.call_count == 1
    assert info.value.status_code == 400
    assert "requestId r-1" in str(info.value)
    assert "check that the allocation id is a uuid" in str(info.value).lower()


def test_connection_refused_is_transient(set_conn: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: a transient connection error, retried, and the sensor keeps waiting."""
    _count_case()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    set_conn(f"http://127.0.0.1:{port}")
    aid = str(uuid.uuid4())
    with pytest.raises(OESConnectionError) as info:
        OESHook().get_allocation(aid)
    assert info.value.transient
    result = _sensor(aid).poke({})
    assert result.is_done is False
    assert_no_token(info.value, capsys.readouterr().out)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("enterprise", ["declared", "endless"])
def test_a_body_dripping_past_the_read_timeout_is_a_timeout(
    enterprise: str, drip_server: str, set_conn: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every byte arrives within the 0.3 s read timeout, but the answer never completes: a transient
    timeout (so the sensor's own ``timeout`` still holds), not a poke that hangs for hours."""
    _count_case()
    set_conn(drip_server, max_retries=0)
    aid = str(uuid.uuid4())
    started = time.monotonic()
    with pytest.raises(OESConnectionError, match="timed out") as info:
        OESHook().get_allocation(aid, enterprise)
    assert time.monotonic() - started < 10  # unfixed, this takes 20 s (declared) or 100 s (endless)
    assert _sensor(aid, enterprise_id=enterprise).poke({}).is_done is False
    assert_no_token(info.value, capsys.readouterr().out)
