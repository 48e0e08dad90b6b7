"""Unit tests of the one retry policy (no real sleeping)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from airflow_provider_oes._retry import RetryPolicy, is_transient
from airflow_provider_oes.exceptions import (
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

if TYPE_CHECKING:
    from collections.abc import Callable

TRANSIENT = [OESServerError, OESConnectionError, OESRateLimitError]
PERMANENT = [
    OESInvalidRequestError,
    OESAuthenticationError,
    OESPermissionDeniedError,
    OESNotFoundError,
    OESResponseError,
]


def _failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


@pytest.mark.parametrize("cls", TRANSIENT)
def test_transient_errors_retried_then_succeed(cls: type[OESError]) -> None:
    fn, calls = _failing([cls("t1"), cls("t2")])
    sleeps: list[float] = []
    assert RetryPolicy(max_retries=3).call(fn, sleep=sleeps.append) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("cls", TRANSIENT)
def test_transient_errors_raised_after_max_retries(cls: type[OESError]) -> None:
    errors: list[BaseException] = [cls(f"t{i}") for i in range(10)]
    fn, calls = _failing(errors)
    sleeps: list[float] = []
    with pytest.raises(cls, match="t3"):
        RetryPolicy(max_retries=3).call(fn, sleep=sleeps.append)
    assert len(calls) == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize("cls", PERMANENT)
def test_permanent_errors_never_retried(cls: type[OESError]) -> None:
    fn, calls = _failing([cls("p")])
    sleeps: list[float] = []
    with pytest.raises(cls):
        RetryPolicy(max_retries=5).call(fn, sleep=sleeps.append)
    assert calls == [1]
    assert sleeps == []


def test_other_exceptions_not_retried() -> None:
    fn, calls = _failing([ValueError("bug")])
    with pytest.raises(ValueError, match="bug"):
        RetryPolicy(max_retries=5).call(fn, sleep=lambda s: None)
    assert calls == [1]


def test_zero_retries_tries_once() -> None:
    fn, calls = _failing([OESServerError("down")])
    with pytest.raises(OESServerError):
        RetryPolicy(max_retries=0).call(fn, sleep=lambda s: None)
    assert calls == [1]


def test_is_transient() -> None:
    for cls in TRANSIENT:
        assert is_transient(cls("x"))
    for cls in PERMANENT:
        assert not is_transient(cls("x"))
    assert not is_transient(OESError("x"))
    assert not is_transient(RuntimeError("x"))


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        for _ in range(50):
            wait = policy.wait_seconds(attempt, OESServerError("x"))
            assert ceiling / 2 <= wait <= ceiling


def test_retry_after_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retries=2, initial_wait=0.5, max_wait=10.0)
    assert policy.wait_seconds(1, OESRateLimitError("x", retry_after=7.0)) == 7.0
    assert policy.wait_seconds(1, OESRateLimitError("x", retry_after=3600.0)) == 10.0
    no_header = policy.wait_seconds(1, OESRateLimitError("x", retry_after=None))
    assert 0.25 <= no_header <= 0.5

    fn, calls = _failing([OESRateLimitError("slow down", retry_after=7.0), OESRateLimitError("x", retry_after=99)])
    sleeps: list[float] = []
    assert policy.call(fn, sleep=sleeps.append) == "ok"
    assert sleeps == [7.0, 10.0]
    assert len(calls) == 3


def test_acall_retries_transient_and_not_permanent() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    # Passed in, not patched over asyncio.sleep: other threads' event loops (left by earlier tests) would
    # call a patched asyncio.sleep too.
    state = {"n": 0}

    async def flaky() -> str:
        state["n"] += 1
        if state["n"] < 3:
            raise OESServerError("down")
        return "ok"

    assert asyncio.run(RetryPolicy(max_retries=3, initial_wait=0.01).acall(flaky, sleep=fake_sleep)) == "ok"
    assert state["n"] == 3
    assert len(slept) == 2

    async def denied() -> str:
        state["n"] += 1
        raise OESAuthenticationError("no")

    state["n"] = 0
    with pytest.raises(OESAuthenticationError):
        asyncio.run(RetryPolicy(max_retries=3, initial_wait=0.01).acall(denied, sleep=fake_sleep))
    assert state["n"] == 1
