"""The provider through Airflow's own CLI, run as real ``airflow`` processes on a throw-away home
(metadata DB: the harness's private PostgreSQL server, see ``tests/harness/postgres.py``).

``connections add/get`` must round-trip every extra under the names the hook reads; ``connections test``
runs the hook's check against the local simulator; ``providers list/get/hooks`` show the provider.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes import __version__
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS
from airflow_provider_oes.testing.simulator import UNLICENSED_ENTERPRISE_ID
from tests.harness.airflow_stack import AirflowStack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

pytestmark = pytest.mark.integration

PACKAGE = "airflow-provider-oes"
_AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:2])


@pytest.fixture(scope="module")
def cli_stack() -> Iterator[AirflowStack]:
    """A migrated throw-away Airflow home (no server needed: the CLI talks to the DB itself)."""
    with AirflowStack(env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}) as stack:
        stack.migrate()
        yield stack


def _json_output(stdout: str) -> Any:
    """Parse the JSON document of a ``-o json`` command.

    Log lines may precede it (Airflow 3.2 logs before ``connections get`` prints), and they can hold
    brackets themselves (``[info]``, ``[2026-...]``): the document is the first line opening with ``[`` or
    ``{`` from which a JSON array or object decodes that runs to the end of the output.
    """
    lines = stdout.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("[", "{")):
            try:
                document = json.loads("".join(lines[i:]))
            except json.JSONDecodeError:
                continue
            if isinstance(document, (list, dict)):
                return document
    raise AssertionError(f"no JSON document in the command's output:\n{stdout}")


def _add(stack: AirflowStack, conn_id: str, host: str, token: str, extra: dict[str, Any]) -> None:
    stack.cli("connections", "delete", conn_id, check=False)
    result = stack.cli(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "oes",
        "--conn-host",
        host,
        "--conn-password",
        token,
        "--conn-extra",
        json.dumps(extra),
    )
    assert f"Successfully added `conn_id`={conn_id}" in result.stdout, result.stdout


def test_connections_add_and_get_round_trip_the_extras(cli_stack: AirflowStack, oes_simulator: OESSimulator) -> None:
    extra = {
        "enterprise_id": oes_simulator.enterprise_id,
        "connect_timeout": 2.5,
        "read_timeout": 7,
        "max_retries": 6,
        "retry_max_wait": 4.5,
        "rate_limit_requests": 120,
        "rate_limit_period": 30,
        "batching": False,
        "batch_size": 25,
        "poll_strategy": "id_batches",
        "feed_overlap": 12.5,
        "feed_page_size": 500,
        "reconcile_interval": 300,
        "ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
        "proxy_url": "",  # a proxy needs an https API; the simulator here is http (see tests/reliability/test_proxy.py)
        "trust_env": False,
    }
    assert set(extra) == set(EXTRA_FIELDS)  # every declared extra goes through the CLI
    _add(cli_stack, "oes_cli", oes_simulator.url, oes_simulator.token, extra)

    [got] = _json_output(cli_stack.cli("connections", "get", "oes_cli", "-o", "json").stdout)
    assert got["conn_type"] == "oes"
    assert got["host"] == oes_simulator.url
    assert got["password"] == oes_simulator.token
    assert got["port"] is None
    # The CLI prints extra values as strings; the names and values must be the ones stored.
    assert got["extra_dejson"] == {name: str(value) for name, value in extra.items()}

    from airflow.sdk import Connection

    conn = Connection(
        conn_id="oes_cli",
        conn_type=got["conn_type"],
        host=got["host"],
        password=got["password"],
        extra=json.dumps(got["extra_dejson"]),
    )
    settings = OESConnectionSettings.from_connection(conn)
    assert settings.base_url == oes_simulator.url
    assert settings.token == oes_simulator.token
    assert settings.enterprise_id == oes_simulator.enterprise_id
    assert (settings.connect_timeout, settings.read_timeout, settings.max_retries) == (2.5, 7.0, 6)
    assert (settings.retry_max_wait, settings.rate_limit_requests, settings.rate_limit_period) == (4.5, 120, 30.0)
    assert (settings.batching, settings.batch_size) == (False, 25)
    assert (settings.poll_strategy, settings.strategy) == ("id_batches", "id_batches")  # the new extra wins
    assert (settings.feed_overlap, settings.feed_page_size, settings.reconcile_interval) == (12.5, 500, 300.0)
    assert settings.ca_bundle == "/etc/ssl/certs/ca-certificates.crt"
    assert (settings.proxy_url, settings.trust_env) == (None, False)


@pytest.mark.parametrize(
    ("case", "token", "enterprise_id", "ok", "expected"),
    [
        ("good-token", None, None, True, "Connection success!"),
        ("bad-token", "not-the-token", None, False, "HTTP 401"),
        ("unlicensed", None, UNLICENSED_ENTERPRISE_ID, False, "does not have OES license"),
    ],
)
def test_connections_test_runs_the_hook_check(
    cli_stack: AirflowStack,
    oes_simulator: OESSimulator,
    case: str,
    token: str | None,
    enterprise_id: str | None,
    ok: bool,
    expected: str,
) -> None:
    conn_id = f"oes_cli_test_{case.replace('-', '_')}"
    _add(
        cli_stack,
        conn_id,
        oes_simulator.url,
        token or oes_simulator.token,
        {"enterprise_id": enterprise_id or oes_simulator.enterprise_id},
    )
    before = oes_simulator.request_count
    result = cli_stack.cli("connections", "test", conn_id, check=False)
    output = result.stdout + result.stderr
    if _AIRFLOW_VERSION >= (3, 3):
        # Airflow 3.2's `connections test` exits 0 whatever the outcome; from 3.3 a failure exits 1.
        assert (result.returncode == 0) is ok, output
    else:
        assert result.returncode == 0, output
    assert expected in output, output
    assert ("Connection failed!" in output) is not ok, output
    assert ("Connection success!" in output) is ok, output
    assert oes_simulator.request_count == before + 1


def test_providers_list_shows_the_provider(cli_stack: AirflowStack) -> None:
    providers = _json_output(cli_stack.cli("providers", "list", "-o", "json").stdout)
    ours = [p for p in providers if p["package_name"] == PACKAGE]
    assert len(ours) == 1, providers
    assert ours[0]["version"] == __version__
    assert "Off-Exchange Settlement" in ours[0]["description"]


def test_providers_get_lists_hooks_sensors_operators_and_triggers(cli_stack: AirflowStack) -> None:
    [info] = _json_output(cli_stack.cli("providers", "get", PACKAGE, "--full", "-o", "json").stdout)
    assert info["package-name"] == PACKAGE
    assert info["name"] == "BitGo OES"
    assert info["versions"] == ["0.2.0", "0.1.0"]
    assert info["asset-uris"] == [{"schemes": ["oes"], "handler": None}]
    modules = {
        kind: [module for entry in info[kind] for module in entry["python-modules"]]
        for kind in ("hooks", "sensors", "operators", "triggers")
    }
    assert modules == {
        "hooks": ["airflow_provider_oes.hooks.oes"],
        "sensors": ["airflow_provider_oes.sensors.allocation", "airflow_provider_oes.sensors.settlement"],
        "operators": ["airflow_provider_oes.operators.allocation"],
        "triggers": [
            "airflow_provider_oes.triggers.allocation",
            "airflow_provider_oes.triggers.event",
            "airflow_provider_oes.triggers.settlement",
            "airflow_provider_oes.triggers.settlement_event",
        ],
    }
    [conn_type] = info["connection-types"]
    assert conn_type["connection-type"] == "oes"
    assert conn_type["hook-class-name"] == "airflow_provider_oes.hooks.oes.OESHook"
    assert set(conn_type["conn-fields"]) == set(EXTRA_FIELDS)


def test_providers_hooks_maps_the_oes_connection_type_to_the_hook(cli_stack: AirflowStack) -> None:
    hooks = _json_output(cli_stack.cli("providers", "hooks", "-o", "json").stdout)
    [oes] = [h for h in hooks if h["connection_type"] == "oes"]
    assert oes["class"] == "airflow_provider_oes.hooks.oes.OESHook"
    assert oes["conn_id_attribute_name"] == "oes_conn_id"
    assert oes["package_name"] == PACKAGE
    assert oes["hook_name"] == "BitGo OES"
