"""Tests of the local OES simulator, over real HTTP on 127.0.0.1 (no provider hook involved)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_oes.testing import simulator as sim_module
from airflow_provider_oes.testing.simulator import (
    UNLICENSED_ENTERPRISE_ID,
    OESSimulator,
    OESSimulatorClient,
    OESSimulatorProcess,
)
from tests.testing._api import Api
from tests.testing._api import assert_error as _assert_error

REPO_ROOT = Path(__file__).resolve().parents[2]
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# ------------------------------------------------------------------------------------ 200 shape
def test_get_returns_spec_shape_and_exact_big_quantity(oes_simulator: OESSimulator, api: Api) -> None:
    quantity = "1234567890123456789012345678901234567890"
    aid = oes_simulator.add_allocation(
        quantity=quantity,
        currency="ofctusdt",
        client_external_id="client-ext-1",
        partner_external_id="partner-ext-1",
        notes="hello",
        extra_fields={"evaluationId": "eval-1"},
    )
    response = api.get(aid)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert '"quantity":"' + quantity + '"' in response.text.replace(" ", "")
    record = response.json()["allocation"]
    assert record["id"] == aid
    assert record["amount"] == {"currency": "ofctusdt", "quantity": quantity}
    assert isinstance(record["amount"]["quantity"], str)
    assert record["status"] == "cleared"
    assert record["reason"] is None
    assert record["retriable"] is False
    assert record["type"] == "allocation"
    assert record["clientExternalId"] == "client-ext-1"
    assert record["partnerExternalId"] == "partner-ext-1"
    assert record["notes"] == "hello"
    assert record["evaluationId"] == "eval-1"
    assert record["connectionId"] == sim_module.DEFAULT_CONNECTION_ID
    assert record["initiatedBy"]
    assert ISO_MS.match(record["createdAt"])
    assert ISO_MS.match(record["updatedAt"])
    assert record == oes_simulator.get_record(aid)


def test_optional_fields_are_omitted(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    record = api.get(aid).json()["allocation"]
    assert "partnerExternalId" not in record
    assert "notes" not in record
    required = {"id", "amount", "connectionId", "clientExternalId", "initiatedBy", "createdAt", "updatedAt"}
    assert required | {"retriable", "reason", "status", "type"} == set(record)


# ------------------------------------------------------------------------------------ errors
def test_invalid_uuid_is_400(api: Api) -> None:
    body = _assert_error(api.get("not-a-uuid"), 400, "InvalidRequestError")
    assert body["error"] == "Invalid UUID format for allocationId"


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_401(oes_simulator: OESSimulator, api: Api, token: str | None) -> None:
    aid = oes_simulator.add_allocation()
    _assert_error(api.get(aid, token=token), 401, "AuthenticationError")


def test_non_member_enterprise_is_401(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    _assert_error(api.get(aid, enterprise_id="someone-else"), 401, "AuthenticationError")
    _assert_error(api.list(enterprise_id="someone-else"), 401, "AuthenticationError")


def test_unlicensed_enterprise_is_403(api: Api) -> None:
    _assert_error(api.get(str(uuid.uuid4()), enterprise_id=UNLICENSED_ENTERPRISE_ID), 403, "PermissionDeniedError")
    _assert_error(api.list(enterprise_id=UNLICENSED_ENTERPRISE_ID), 403, "PermissionDeniedError")


def test_unknown_and_other_enterprise_allocations_are_404(oes_simulator: OESSimulator, api: Api) -> None:
    _assert_error(api.get(str(uuid.uuid4())), 404, "NotFoundError")
    other = oes_simulator.add_allocation(enterprise_id="other-enterprise")
    _assert_error(api.get(other), 404, "NotFoundError")
    # the other enterprise became a member, and sees its own allocation
    assert api.get(other, enterprise_id="other-enterprise").json()["allocation"]["id"] == other


# ------------------------------------------------------------------------------------ timelines
def test_timeline_by_seconds(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="released", reserved_for_seconds=0.3)
    first = api.get(aid).json()["allocation"]
    assert first["status"] == "reserved"
    assert first["reason"] == "awaiting partner confirmation"
    assert first["updatedAt"] == first["createdAt"]
    time.sleep(0.35)
    later = api.get(aid).json()["allocation"]
    assert later["status"] == "released"
    assert later["reason"] == "insufficient balance"
    assert later["updatedAt"] > later["createdAt"]


def test_timeline_by_reads_counts_single_and_list_reads(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="cleared", reserved_for_reads=2)
    assert oes_simulator.get_record(aid)["status"] == "reserved"  # not a read
    assert api.get(aid).json()["allocation"]["status"] == "reserved"
    assert api.list(allocationIds=aid).json()["allocations"][0]["status"] == "reserved"
    record = api.get(aid).json()["allocation"]
    assert record["status"] == "cleared"
    assert record["reason"] is None
    assert record["updatedAt"] >= record["createdAt"]


def test_reserved_forever_and_custom_reasons(oes_simulator: OESSimulator, api: Api) -> None:
    forever = oes_simulator.add_allocation(final_status="reserved", reserved_reason="waiting")
    released = oes_simulator.add_allocation(final_status="released", final_reason="partner rejected")
    for _ in range(3):
        assert api.get(forever).json()["allocation"]["status"] == "reserved"
    assert api.get(forever).json()["allocation"]["reason"] == "waiting"
    assert api.get(released).json()["allocation"]["reason"] == "partner rejected"


def test_set_status_overrides_timeline(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="reserved")
    before = api.get(aid).json()["allocation"]
    time.sleep(0.01)
    oes_simulator.set_status(aid, "released", reason="manual")
    after = api.get(aid).json()["allocation"]
    assert (after["status"], after["reason"]) == ("released", "manual")
    assert after["updatedAt"] > before["updatedAt"]
    oes_simulator.set_status(aid, "cleared")
    assert api.get(aid).json()["allocation"]["reason"] is None
    with pytest.raises(ValueError, match="status"):
        oes_simulator.set_status(aid, "pending")
    with pytest.raises(KeyError):
        oes_simulator.set_status(str(uuid.uuid4()), "cleared")


def test_add_allocation_validates(oes_simulator: OESSimulator) -> None:
    with pytest.raises(ValueError, match="final_status"):
        oes_simulator.add_allocation(final_status="done")
    with pytest.raises(ValueError, match="UUID"):
        oes_simulator.add_allocation(allocation_id="abc")
    aid = oes_simulator.add_allocation()
    with pytest.raises(ValueError, match="already exists"):
        oes_simulator.add_allocation(allocation_id=aid)


# ------------------------------------------------------------------------------------ list
def test_list_filters_sorting_and_paging(oes_simulator: OESSimulator, api: Api) -> None:
    ids = [oes_simulator.add_allocation() for _ in range(5)]
    released = oes_simulator.add_allocation(final_status="released", currency="ofcteth", type="deallocation")
    reserved = oes_simulator.add_allocation(final_status="reserved")
    oes_simulator.add_allocation(enterprise_id="other-enterprise")

    everything = api.list().json()["allocations"]
    assert [r["id"] for r in everything] == [*ids, released, reserved]  # createdAt order, own enterprise
    assert [r["id"] for r in api.list(statuses="released,reserved").json()["allocations"]] == [released, reserved]
    assert [r["id"] for r in api.list(currencies="ofcteth").json()["allocations"]] == [released]
    assert [r["id"] for r in api.list(types="deallocation").json()["allocations"]] == [released]
    selected = api.list(allocationIds=f"{ids[3]},{ids[1]}").json()["allocations"]
    assert [r["id"] for r in selected] == [ids[1], ids[3]]
    assert [r["id"] for r in api.list(pageSize=2, pageNumber=1).json()["allocations"]] == ids[2:4]
    assert api.list(pageSize=2, pageNumber=10).json() == {"allocations": []}
    by_id_desc = api.list(sortField="id", sortDirection="DESC").json()["allocations"]
    assert [r["id"] for r in by_id_desc] == sorted([*ids, released, reserved], reverse=True)
    future = api.list(createdOnOrAfter="2999-01-01T00:00:00Z").json()
    assert future == {"allocations": []}


@pytest.mark.parametrize(
    "params",
    [
        {"allocationIds": "not-a-uuid"},
        {"statuses": "pending"},
        {"pageSize": "0"},
        {"pageSize": str(sim_module.MAX_PAGE_SIZE + 1)},
        {"pageNumber": "-1"},
        {"pageNumber": "x"},
        {"createdBefore": "yesterday"},
        {"sortField": "colour"},
    ],
)
def test_list_rejects_bad_parameters(api: Api, params: dict[str, str]) -> None:
    _assert_error(api.list(**params), 400, "InvalidRequestError")


def test_list_default_page_size_is_100(oes_simulator: OESSimulator, api: Api) -> None:
    for _ in range(sim_module.DEFAULT_PAGE_SIZE + 1):
        oes_simulator.add_allocation()
    assert len(api.list().json()["allocations"]) == sim_module.DEFAULT_PAGE_SIZE
    assert len(api.list(pageNumber=1).json()["allocations"]) == 1


# ------------------------------------------------------------------------------------ counting
def test_request_counting(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    assert oes_simulator.request_count == 0
    api.get(aid)
    api.get("bad", token=None)
    api.list(statuses="cleared")
    requests.get(f"{oes_simulator.url}/_sim/health", timeout=10)  # control API: not counted
    assert oes_simulator.request_count == 3
    method, path, query, stamp = oes_simulator.requests[2]
    assert (method, query) == ("GET", "statuses=cleared")
    assert path.endswith("/clients/allocations")
    assert stamp <= time.monotonic()
    oes_simulator.reset_counts()
    assert oes_simulator.request_count == 0
    assert oes_simulator.requests == []


# ------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize(
    ("kind", "status", "name"),
    [
        ("500", 500, "InternalServerError"),
        ("502", 502, "BadGatewayError"),
        ("503", 503, "ServiceUnavailableError"),
    ],
)
def test_server_error_faults(oes_simulator: OESSimulator, api: Api, kind: str, status: int, name: str) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault(kind, count=2)
    _assert_error(api.get(aid), status, name)
    _assert_error(api.list(), status, name)
    assert api.get(aid).status_code == 200  # count consumed


def test_429_with_and_without_retry_after(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("429", retry_after=7)
    oes_simulator.inject_fault("429")
    first = api.get(aid)
    _assert_error(first, 429, "RateLimitExceededError")
    assert first.headers["Retry-After"] == "7"
    second = api.get(aid)
    assert second.status_code == 429
    assert "Retry-After" not in second.headers


def test_slow_fault_delays_without_blocking_server(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("slow", delay=0.6)
    result: dict[str, Any] = {}

    def slow_call() -> None:
        start = time.monotonic()
        response = requests.get(f"{api.base()}/{aid}", headers={"Authorization": "Bearer sim-token"}, timeout=10)
        result["elapsed"] = time.monotonic() - start
        result["status"] = response.json()["allocation"]["status"]

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.1)
    assert api.get(aid).json()["allocation"]["status"] == "cleared"
    assert thread.is_alive()  # the other request answered while the slow one was still sleeping
    thread.join()
    assert result["elapsed"] >= 0.6
    assert result["status"] == "cleared"  # answered normally after the delay


def test_drop_fault_breaks_the_connection(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("drop", count=2)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(aid)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{api.base()}/{aid}", headers={"Authorization": "Bearer sim-token"})
    assert api.get(aid).status_code == 200


def test_non_json_fault(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("non_json")
    response = api.get(aid)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html>oops</html>"


def test_record_faults_on_single_get(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(final_status="released")
    for kind in ("missing_fields", "wrong_types", "unknown_status", "wrong_id"):
        oes_simulator.inject_fault(kind)
    missing = api.get(aid).json()["allocation"]
    assert "status" not in missing
    assert "amount" not in missing
    assert missing["id"] == aid
    wrong_types = api.get(aid).json()["allocation"]
    assert wrong_types["retriable"] == "yes"
    assert wrong_types["amount"]["quantity"] == 12.5
    assert api.get(aid).json()["allocation"]["status"] == "pending_review"
    wrong_id = api.get(aid).json()["allocation"]
    assert wrong_id["id"] != aid
    uuid.UUID(wrong_id["id"])
    assert wrong_id["status"] == "cleared"
    assert api.get(aid).json()["allocation"]["status"] == "released"


def test_record_fault_applies_to_every_list_item(oes_simulator: OESSimulator, api: Api) -> None:
    for _ in range(3):
        oes_simulator.add_allocation()
    oes_simulator.inject_fault("unknown_status")
    assert {r["status"] for r in api.list().json()["allocations"]} == {"pending_review"}
    assert {r["status"] for r in api.list().json()["allocations"]} == {"cleared"}


def test_record_fault_waits_for_a_successful_request(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation(reserved_for_reads=1)
    oes_simulator.inject_fault("wrong_id")
    _assert_error(api.get(str(uuid.uuid4())), 404, "NotFoundError")  # fault not consumed by a 404
    assert api.get(aid).json()["allocation"]["id"] != aid
    # the faulted answer was not a genuine read: the record is still reserved once
    assert api.get(aid).json()["allocation"]["status"] == "reserved"
    assert api.get(aid).json()["allocation"]["status"] == "cleared"


def test_fault_targeting_one_allocation(oes_simulator: OESSimulator, api: Api) -> None:
    target = oes_simulator.add_allocation()
    other = oes_simulator.add_allocation()
    oes_simulator.inject_fault("500", allocation_id=target)
    assert api.get(other).status_code == 200
    assert api.list().status_code == 200  # no allocationIds filter: does not match
    assert api.list(allocationIds=target).status_code == 500
    assert api.get(target).status_code == 200


def test_clear_faults_and_validation(oes_simulator: OESSimulator, api: Api) -> None:
    aid = oes_simulator.add_allocation()
    oes_simulator.inject_fault("500", count=5)
    assert oes_simulator.faults[0]["count"] == 5
    oes_simulator.clear_faults()
    assert oes_simulator.faults == []
    assert api.get(aid).status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        oes_simulator.inject_fault("teapot")
    with pytest.raises(ValueError, match="count"):
        oes_simulator.inject_fault("500", count=0)


# ------------------------------------------------------------------------------------ control API
def test_control_api_over_http(oes_simulator: OESSimulator, api: Api) -> None:
    control = f"{oes_simulator.url}/_sim"
    health = requests.get(f"{control}/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["enterpriseId"] == oes_simulator.enterprise_id
    created = requests.post(f"{control}/allocations", json={"final_status": "reserved", "quantity": "42"}, timeout=10)
    aid = created.json()["id"]
    assert api.get(aid).json()["allocation"]["amount"]["quantity"] == "42"
    status = requests.post(f"{control}/allocations/{aid}/status", json={"status": "cleared"}, timeout=10)
    assert status.json()["status"] == "cleared"
    assert requests.post(f"{control}/allocations", json={"bogus": 1}, timeout=10).status_code == 400
    assert requests.post(f"{control}/allocations/{uuid.uuid4()}/status", json={"status": "cleared"}).status_code == 404
    assert requests.post(f"{control}/faults", json={"kind": "503"}, timeout=10).status_code == 200
    assert api.get(aid).status_code == 503
    requests.post(f"{control}/faults", json={"kind": "500"}, timeout=10)
    assert requests.delete(f"{control}/faults", timeout=10).json() == {"faults": []}
    stats = requests.get(f"{control}/stats", timeout=10).json()
    assert stats["request_count"] == 2
    assert stats["requests"][0][0] == "GET"
    requests.post(f"{control}/reset_counts", timeout=10)
    assert oes_simulator.request_count == 0


def test_simulator_client(oes_simulator: OESSimulator, api: Api) -> None:
    client = OESSimulatorClient(oes_simulator.url)
    try:
        aid = client.add_allocation(final_status="reserved", currency="ofcteth")
        assert oes_simulator.get_record(aid)["amount"]["currency"] == "ofcteth"
        client.set_status(aid, "released", reason="nope")
        assert client.get_record(aid)["reason"] == "nope"
        client.inject_fault("429", retry_after=3)
        assert api.get(aid).headers["Retry-After"] == "3"
        client.inject_fault("500")
        client.clear_faults()
        assert api.get(aid).status_code == 200
        assert client.request_count == 2
        client.reset_counts()
        assert client.request_count == 0
        with pytest.raises(ValueError, match="unknown fault kind"):
            client.inject_fault("teapot")
        with pytest.raises(KeyError):
            client.set_status(str(uuid.uuid4()), "cleared")
    finally:
        client.close()


# ------------------------------------------------------------------------------------ lifecycle
def test_own_simulator_start_stop_and_custom_identity() -> None:
    started = time.monotonic()
    with OESSimulator(port=0, token="t0k", enterprise_id="ent-x") as sim:
        assert time.monotonic() - started < 1.0
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        aid = sim.add_allocation()
        url = f"{sim.url}/api/network/v1/enterprises/ent-x/clients/allocations/{aid}"
        assert requests.get(url, headers={"Authorization": "Bearer t0k"}, timeout=10).status_code == 200
        assert requests.get(url, headers={"Authorization": "Bearer sim-token"}, timeout=10).status_code == 401
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)


def test_simulator_process(tmp_path: Path) -> None:
    with OESSimulatorProcess(token="proc-token", enterprise_id="proc-ent") as proc:
        assert proc.url.startswith("http://127.0.0.1:")
        aid = proc.client.add_allocation(reserved_for_reads=1)
        url = f"{proc.url}/api/network/v1/enterprises/proc-ent/clients/allocations/{aid}"
        headers = {"Authorization": "Bearer proc-token"}
        assert requests.get(url, headers=headers, timeout=10).json()["allocation"]["status"] == "reserved"
        assert requests.get(url, headers=headers, timeout=10).json()["allocation"]["status"] == "cleared"
        assert proc.client.request_count == 2
        assert proc.client.rate_limit == (360, 60.0)
        pid = proc.pid
    assert proc.returncode == 0  # clean shutdown on SIGTERM
    with OESSimulatorProcess(rate_limit=(5, 2.5), clock_offset=-30) as proc:
        assert proc.client.rate_limit == (5, 2.5)
        assert proc.client.clock_offset == -30
        assert abs(proc.client.now().timestamp() - (time.time() - 30)) < 2
    with OESSimulatorProcess(rate_limit=None) as proc:
        assert proc.client.rate_limit is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("value", ["lots", "0/60", "10/-1"])
def test_cli_rejects_a_bad_rate_limit_naming_it(value: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "airflow_provider_oes.testing.simulator", "--port", "0", "--rate-limit", value]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert f"expected REQUESTS/SECONDS (e.g. 360/60) or none, not {value!r}" in result.stderr


def test_cli_entry_point_seeds_and_stops_on_sigint() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_oes.testing.simulator",
            "--port",
            "0",
            "--token",
            "cli-t",
            "--seed-demo",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        found = re.match(r"OES simulator on (http://127\.0\.0\.1:\d+) token=cli-t enterprise=sim-enterprise$", banner)
        assert found, banner
        seeded = dict(proc.stdout.readline().split()[1:3] for _ in range(3))
        assert set(seeded) == {"clears_after_3s", "released_after_3s", "reserved_forever"}
        url = f"{found.group(1)}/api/network/v1/enterprises/sim-enterprise/clients/allocations"
        listing = requests.get(url, headers={"Authorization": "Bearer cli-t"}, timeout=10).json()["allocations"]
        assert {r["id"]: r["status"] for r in listing} == dict.fromkeys(seeded.values(), "reserved")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------ fixtures
def test_oes_connection_fixture(oes_connection: str, oes_simulator: OESSimulator) -> None:
    assert oes_connection == "oes_default"
    conn = json.loads(os.environ["AIRFLOW_CONN_OES_DEFAULT"])
    assert conn == {
        "conn_type": "oes",
        "host": oes_simulator.url,
        "password": oes_simulator.token,
        "extra": {"enterprise_id": oes_simulator.enterprise_id},
    }


def test_fixture_state_is_fresh(pytester: pytest.Pytester) -> None:
    """Two tests in one run share the session simulator: the second must see none of the first's state."""
    pytester.makeconftest(
        """
        import importlib

        def pytest_configure(config):
            # the plugin, loaded once: by its entry point when the package is installed, else here
            module = importlib.import_module("airflow_provider_oes.testing.pytest_plugin")
            if not config.pluginmanager.is_registered(module) and not config.pluginmanager.has_plugin("oes"):
                config.pluginmanager.register(module, module.__name__)
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import pytest
        import requests

        AID = "00000000-0000-4000-8000-000000000001"

        def test_dirty(oes_simulator):
            oes_simulator.add_allocation(allocation_id=AID)
            requests.get(oes_simulator.url + "/api/network/v1/enterprises/e/clients/allocations", timeout=10)
            oes_simulator.inject_fault("500")
            oes_simulator.set_clock_offset(3600)
            oes_simulator.set_rate_limit(1)
            oes_simulator.reject_list(404)
            oes_simulator.add_token("extra-token")
            oes_simulator.schedule_flips([AID], status="released", start=60)
            assert oes_simulator.get_record(AID)["id"] == AID
            assert len(oes_simulator.faults) == 1
            assert oes_simulator.request_count == 1
            assert oes_simulator.pending_flips == 1

        def test_clean(oes_simulator, oes_simulator_session):
            assert oes_simulator is oes_simulator_session
            assert oes_simulator.faults == []
            assert oes_simulator.request_count == 0
            assert oes_simulator.pending_flips == 0
            assert (oes_simulator.clock_offset, oes_simulator.rate_limit) == (0, (360, 60.0))
            with pytest.raises(KeyError):
                oes_simulator.get_record(AID)
            url = oes_simulator.url + "/api/network/v1/enterprises/sim-enterprise/clients/allocations"
            assert requests.get(url, headers={"Authorization": "Bearer sim-token"}, timeout=10).status_code == 200
            assert requests.get(url, headers={"Authorization": "Bearer extra-token"}, timeout=10).status_code == 401
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_package_exports_lazily() -> None:
    code = (
        "import sys, airflow_provider_oes.testing as t, airflow_provider_oes.testing.pytest_plugin;"
        "assert 'uvicorn' not in sys.modules and 'fastapi' not in sys.modules, 'heavy import';"
        "assert t.UNLICENSED_ENTERPRISE_ID == 'unlicensed-enterprise';"
        "assert 'uvicorn' in sys.modules; print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
