"""What the simulator does in front of its routes, over real HTTP: the per-token rate limit, the
``enterprise-id`` header check, and what it records of each request."""

from __future__ import annotations

import email.utils
import threading
import time
import uuid

import pytest
import requests

from airflow_provider_oes.testing.simulator import (
    BITGO_RATE_LIMIT,
    ENTERPRISE_HEADER,
    OESSimulator,
    OESSimulatorClient,
)
from tests.testing._api import Api, assert_error, wait_for


# ------------------------------------------------------------------------------------ rate limit
def test_bitgo_limit_is_the_default_and_the_361st_request_gets_429(oes_simulator: OESSimulator, api: Api) -> None:
    assert oes_simulator.rate_limit == BITGO_RATE_LIMIT == (360, 60.0)
    aid = oes_simulator.add_allocation()
    statuses = [api.get(aid).status_code for _ in range(360)]
    assert statuses == [200] * 360
    refused = api.get(aid)
    body = assert_error(refused, 429, "RateLimitExceededError")
    assert "rate limit" in body["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert_error(api.list(), 429, "RateLimitExceededError")  # the list endpoint shares the budget
    seen = oes_simulator.token_requests()
    assert len(seen) == 362
    assert [admitted for _, admitted in seen[-3:]] == [True, False, False]
    assert oes_simulator.max_requests_in_window(admitted=True) == 360
    assert oes_simulator.max_requests_in_window() == 362


def test_limit_counts_every_client_of_a_token_together(oes_simulator: OESSimulator) -> None:
    oes_simulator.set_rate_limit(12, window=30)
    aid = oes_simulator.add_allocation()
    url = f"{Api(oes_simulator).base()}/{aid}"
    codes: list[int] = []

    def client() -> None:  # each thread its own connection, as separate processes would have
        with requests.Session() as session:
            for _ in range(8):
                codes.append(session.get(url, headers={"Authorization": f"Bearer {oes_simulator.token}"}).status_code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200] * 12 + [429] * 12
    assert oes_simulator.max_requests_in_window(window=30, admitted=True) == 12


def test_window_slides_and_retry_after_says_when(oes_simulator: OESSimulator, api: Api) -> None:
    oes_simulator.set_rate_limit(3, window=1.0)
    aid = oes_simulator.add_allocation()
    assert [api.get(aid).status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get(aid)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    wait_for(lambda: api.get(aid).status_code == 200, timeout=5, what="the window to slide")
    times = [t for t, admitted in oes_simulator.token_requests() if admitted]
    assert len(times) == 4
    assert times[3] - times[0] >= 1.0  # admitted only once the first request left the window
    assert oes_simulator.max_requests_in_window(window=1.0, admitted=True) == 3


def test_each_token_has_its_own_budget_and_bad_tokens_get_401(oes_simulator: OESSimulator, api: Api) -> None:
    oes_simulator.set_rate_limit(2)
    oes_simulator.add_token("second-user")
    aid = oes_simulator.add_allocation()
    assert [api.get(aid).status_code for _ in range(3)] == [200, 200, 429]
    assert [api.get(aid, token="second-user").status_code for _ in range(3)] == [200, 200, 429]
    assert [api.get(aid, token="unknown").status_code for _ in range(4)] == [401] * 4  # not limited, refused
    assert len(oes_simulator.token_requests("second-user")) == 3
    assert oes_simulator.token_requests("unknown") == []


def test_injected_429_still_works_under_the_limit(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("429", retry_after=7)
    first = api.get(aid)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert api.get(aid).status_code == 200


def test_no_limit_and_reset_restores_the_constructor_limit() -> None:
    with OESSimulator(rate_limit=None) as sim:
        api = Api(sim)
        aid = sim.add_allocation()
        assert sim.rate_limit is None
        assert {api.get(aid).status_code for _ in range(400)} == {200}
        sim.set_rate_limit(1)
        assert api.get(aid).status_code == 429  # the 400 requests already in the window count
        sim.reset_counts()
        assert [api.get(aid).status_code for _ in range(2)] == [200, 429]
        sim.reset()
        assert sim.rate_limit is None
        assert sim.token_requests() == []
    with pytest.raises(ValueError, match="limit"):
        OESSimulator(rate_limit=(0, 60.0))
    with pytest.raises(ValueError, match="window"):
        OESSimulator().set_rate_limit(5, window=0)


def test_rate_limit_through_the_control_api(oes_simulator: OESSimulator, api: Api) -> None:
    client = OESSimulatorClient(oes_simulator.url)
    try:
        client.set_rate_limit(1, window=20)
        assert client.rate_limit == (1, 20.0)
        client.add_token("other")
        aid = oes_simulator.add_allocation()
        assert [api.get(aid).status_code for _ in range(2)] == [200, 429]
        assert api.get(aid, token="other").status_code == 200
        assert [ok for _, ok in client.token_requests()] == [True, False]
        assert client.max_requests_in_window(window=20) == 2
        assert client.max_requests_in_window("other", window=20) == 1
        client.set_rate_limit(None)
        assert client.rate_limit is None
        with pytest.raises(ValueError, match="limit"):
            client.set_rate_limit(-3)
    finally:
        client.close()


# ------------------------------------------------------------------------------------ enterprise-id header
def test_enterprise_header_absent_or_matching_is_accepted_and_recorded(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    own = {ENTERPRISE_HEADER: oes_simulator.enterprise_id}
    assert api.get(aid).status_code == 200
    assert api.get(aid, headers=own).status_code == 200
    assert api.list(headers=own).status_code == 200
    assert oes_simulator.enterprise_id_headers == [None, oes_simulator.enterprise_id, oes_simulator.enterprise_id]
    assert len(oes_simulator.requests) == 3


def test_enterprise_header_disagreeing_with_the_path_is_400(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    other = {ENTERPRISE_HEADER: "another-enterprise"}
    body = assert_error(api.get(aid, headers=other), 400, "InvalidRequestError")
    assert "another-enterprise" in body["error"]
    assert oes_simulator.enterprise_id in body["error"]
    assert_error(api.list(headers=other), 400, "InvalidRequestError")
    assert_error(api.get(aid, token=None, headers=other), 401, "AuthenticationError")  # auth comes first
    assert oes_simulator.get_record(aid)["status"] == "cleared"


def test_enterprise_headers_through_the_control_api(oes_simulator: OESSimulator, api: Api) -> None:
    client = OESSimulatorClient(oes_simulator.url)
    try:
        api.get(str(uuid.uuid4()), headers={ENTERPRISE_HEADER: oes_simulator.enterprise_id})
        api.get(str(uuid.uuid4()))
        assert client.enterprise_id_headers == [oes_simulator.enterprise_id, None]
        client.reset_counts()
        assert client.enterprise_id_headers == []
    finally:
        client.close()


def test_date_header_of_the_control_api_is_the_simulator_clock_too(oes_simulator: OESSimulator) -> None:
    oes_simulator.set_clock_offset(86_400)
    answer = requests.get(f"{oes_simulator.url}/_sim/health", timeout=10)
    stamp = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
    assert abs(stamp - (time.time() + 86_400)) < 5
