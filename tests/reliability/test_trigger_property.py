"""Property: the deferrable path (trigger, shared poller, async client, ``execute_complete``) never lies either.

Hypothesis draws a schedule of API answers and the allocation's true final state, as in
``test_outcome_property.py``. An ``httpx.MockTransport`` replays them to the real async client (retries,
parsing, the poller's batching and single-GET confirmation), the trigger's event goes through the
sensor's ``execute_complete``, and the outcome is checked against the issue's rules:

* success only when the truth is ``cleared``;
* failure only on ``released`` or when a permanent answer was served;
* with a final truth and only transient trouble, the trigger always fires; with a non-final truth and
  only transient trouble, it keeps waiting.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_oes.exceptions import AllocationReleasedError, OESError
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.reliability._support import FIGURES, TOKEN, connection_json
from tests.reliability.test_outcome_property import ALLOCATION_ID, PERMANENT, TRANSIENT, TRUTHS, WAITING, _record

if TYPE_CHECKING:
    from collections.abc import Iterator

HOST = "https://oes.example.test"
SETTLED_AFTER = 3
"""A non-final truth served this many times (with the schedule used up) counts as "keeps waiting"."""
TALLY: Counter[str] = Counter()


class Replay:
    """Serves the drawn schedule to every request, then the truth forever."""

    def __init__(self, schedule: list[str], truth: str) -> None:
        self.answers = list(schedule)
        self.truth = truth
        self.truth_served = 0
        self.settled = asyncio.Event()
        self.permanent_served = False
        self.leaked = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if TOKEN not in request.headers.get("Authorization", ""):
            raise AssertionError("request without the connection's token")
        if self.answers:
            kind = self.answers.pop(0)
        else:
            kind = self.truth
            self.truth_served += 1
            if self.truth_served >= SETTLED_AFTER:
                self.settled.set()
        is_list = request.url.path.endswith("/allocations")
        if kind in PERMANENT and not (is_list and kind == "wrong_id"):
            self.permanent_served = True  # a list's wrong-id record is skipped, then confirmed by single GET
        return self._response(kind, request, is_list)

    @staticmethod
    def _response(kind: str, request: httpx.Request, is_list: bool) -> httpx.Response:
        errors = {"error": "simulated", "name": "SimulatedError", "requestId": "req-1"}
        if kind in {"500", "502", "503", "504", "400", "401", "403", "404", "429"}:
            return httpx.Response(int(kind), json=errors)
        if kind == "429-retry-after":
            return httpx.Response(429, json=errors, headers={"Retry-After": "7"})
        if kind == "connect-timeout":
            raise httpx.ConnectTimeout("simulated", request=request)
        if kind == "read-timeout":
            raise httpx.ReadTimeout("simulated", request=request)
        if kind in {"reset", "drop"}:
            raise httpx.RemoteProtocolError("simulated: connection closed mid-response", request=request)
        if kind == "non_json":
            return httpx.Response(200, text="<html>cleared</html>")
        if kind == "not_an_object":
            return httpx.Response(200, json=["cleared"])
        record: dict[str, Any]
        if kind == "missing_fields":
            record = _record("cleared")
            del record["status"]
        elif kind == "wrong_types":
            record = _record("cleared")
            record["amount"]["quantity"] = 1e8
        elif kind == "wrong_id":
            record = _record("cleared", "0c7e3b1a-0000-4000-8000-000000000000")
        elif kind == "unknown_status":
            record = _record("pending_review")
        else:
            record = _record(kind)
        body = {"allocations": [record]} if is_list else {"allocation": record}
        return httpx.Response(200, content=json.dumps(body).encode())


_CURRENT: list[Replay] = []


class _MockedAsyncClient(httpx.AsyncClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["transport"] = httpx.MockTransport(lambda request: _CURRENT[-1](request))
        super().__init__(*args, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def _environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx, "AsyncClient", _MockedAsyncClient)
        mp.setenv("AIRFLOW_CONN_OES_DEFAULT", "")
        yield


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ntrigger property tally: {dict(sorted(TALLY.items()))}")


async def _run(replay: Replay) -> tuple[str, dict[str, Any] | None]:
    trigger = AllocationStatusTrigger(ALLOCATION_ID, "ent", poll_interval=0.001)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger ended without an event")

    fired = asyncio.ensure_future(first_event())
    settled = asyncio.ensure_future(replay.settled.wait())
    done, _ = await asyncio.wait({fired, settled}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    settled.cancel()
    if fired in done:
        return "fired", fired.result()
    fired.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fired
    return ("waiting" if done else "stuck"), None


schedules = st.lists(
    st.one_of(st.sampled_from(TRANSIENT), st.sampled_from(WAITING), st.sampled_from(TRANSIENT + PERMANENT + WAITING)),
    max_size=12,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules, truth=st.sampled_from(TRUTHS), batching=st.booleans())
def test_trigger_outcome_never_lies(schedule: list[str], truth: str, batching: bool) -> None:
    # The module fixture set this variable first, so it restores the original value afterwards.
    os.environ["AIRFLOW_CONN_OES_DEFAULT"] = connection_json(
        HOST, enterprise_id="ent", retry_max_wait=0, batching=batching, rate_limit_requests=10**6
    )
    replay = Replay(schedule, truth)
    _CURRENT.append(replay)
    try:
        state, event = asyncio.run(_run(replay))
    finally:
        _CURRENT.pop()
    assert state != "stuck", "neither an event nor a settled wait within 10 s"
    outcome = "waiting"
    if event is not None:
        assert TOKEN not in json.dumps(event)
        sensor = AllocationStatusSensor(task_id="wait", allocation_id=ALLOCATION_ID, deferrable=True)
        try:
            value = sensor.execute_complete({}, event)
        except (OESError, AllocationReleasedError):
            outcome = "failed"
        else:
            assert value["id"] == ALLOCATION_ID
            outcome = "success"
    FIGURES["hypothesis examples (trigger property)"] += 1
    TALLY[f"truth={truth} -> {outcome}"] += 1
    false_success = outcome == "success" and truth != "cleared"
    FIGURES["false successes"] += int(false_success)
    assert not false_success, (schedule, truth, event)
    if outcome == "failed":
        assert truth == "released" or replay.permanent_served, (schedule, truth, event)
    if not replay.permanent_served:
        expected = {"cleared": "success", "released": "failed"}.get(truth, "waiting")
        assert outcome == expected, (schedule, truth, batching, event)
