"""Unit tests of the provider metadata read by Airflow's providers manager and the connections UI."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import json
from typing import Any

from airflow_provider_oes import __version__
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS, get_provider_info
from airflow_provider_oes.hooks.oes import OESHook


def _conn_type() -> dict[str, Any]:
    types = get_provider_info()["connection-types"]
    assert len(types) == 1
    return types[0]


def test_package_name_is_the_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-oes"
    assert importlib.metadata.distribution(info["package-name"]).version == __version__
    assert info["versions"] == [__version__, "0.1.0"]  # newest first, as in Airflow's provider.yaml
    assert __version__ == "0.2.0"
    json.dumps(info)  # pure JSON data


def test_entry_point_points_at_get_provider_info() -> None:
    eps = importlib.metadata.entry_points(group="apache_airflow_provider")
    values = {ep.value for ep in eps if ep.dist is not None and ep.dist.name == "airflow-provider-oes"}
    assert values == {"airflow_provider_oes.get_provider_info:get_provider_info"}


def test_connection_type() -> None:
    conn_type = _conn_type()
    assert conn_type["connection-type"] == "oes"
    assert conn_type["hook-class-name"] == "airflow_provider_oes.hooks.oes.OESHook"
    assert OESHook.conn_type == "oes"
    assert OESHook.default_conn_name == "oes_default"
    assert OESHook.conn_name_attr == "oes_conn_id"


def test_matches_airflows_provider_info_schema() -> None:
    import jsonschema

    schema_path = importlib.resources.files("airflow") / "provider_info.schema.json"
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_every_public_trigger_is_registered() -> None:
    import inspect
    import pkgutil

    from airflow.triggers.base import BaseTrigger

    import airflow_provider_oes.triggers as triggers

    registered = {module for entry in get_provider_info()["triggers"] for module in entry["python-modules"]}
    public = set()
    for info in pkgutil.iter_modules(triggers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{triggers.__name__}.{info.name}")
        if any(
            issubclass(obj, BaseTrigger) and obj.__module__ == module.__name__
            for obj in vars(module).values()
            if inspect.isclass(obj)
        ):
            public.add(module.__name__)
    assert public == {
        "airflow_provider_oes.triggers.allocation",
        "airflow_provider_oes.triggers.event",
        "airflow_provider_oes.triggers.settlement",
        "airflow_provider_oes.triggers.settlement_event",
    }
    assert registered == public


def test_oes_asset_scheme_is_declared() -> None:
    from airflow_provider_oes.assets import ASSET_URI_SCHEME

    assert get_provider_info()["asset-uris"] == [{"schemes": [ASSET_URI_SCHEME], "handler": None}]


def test_module_lists_import() -> None:
    info = get_provider_info()
    for key in ("hooks", "sensors", "operators", "triggers"):
        for entry in info[key]:
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_every_conn_field_has_label_and_schema() -> None:
    fields = _conn_type()["conn-fields"]
    assert fields
    for name, field in fields.items():
        assert field["label"], name
        assert isinstance(field["schema"], dict), name
        assert "type" in field["schema"], name


def test_declared_extras_are_what_settings_read() -> None:
    declared = set(_conn_type()["conn-fields"])
    read = {f.name for f in dataclasses.fields(OESConnectionSettings)} - {"conn_id", "base_url", "token"}
    assert declared == read == set(EXTRA_FIELDS)


def test_schema_defaults_match_settings_defaults() -> None:
    fields = _conn_type()["conn-fields"]
    defaults = {f.name: f.default for f in dataclasses.fields(OESConnectionSettings)}
    for name, field in fields.items():
        if "default" in field["schema"]:
            assert field["schema"]["default"] == defaults[name], name


def test_ui_field_behaviour() -> None:
    behaviour = _conn_type()["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "login", "port"}
    assert behaviour["relabeling"]["password"] == "Access token"
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert "https://app.bitgo.com" in behaviour["placeholders"]["host"]
    assert "https://app.bitgo-test.com" in behaviour["placeholders"]["host"]
    assert OESHook.get_ui_field_behaviour() == behaviour


def test_version_has_one_source() -> None:
    """pyproject reads the version from ``__version__``: the installed metadata and the package agree."""
    import re

    from tests._paths import REPO_ROOT

    text = (REPO_ROOT / "pyproject.toml").read_text()
    project = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project)
    assert re.search(r'(?m)^dynamic\s*=\s*\[[^]]*"version"', project)
    assert 'version = {attr = "airflow_provider_oes.__version__"}' in text
    assert importlib.metadata.version("airflow-provider-oes") == __version__


def test_default_connection_id_has_one_source() -> None:
    import inspect

    from airflow_provider_oes.operators.allocation import GetAllocationOperator
    from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
    from airflow_provider_oes.testing import pytest_plugin
    from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger

    defaults = {
        cls.__name__: inspect.signature(cls.__init__).parameters["oes_conn_id"].default
        for cls in (OESHook, AllocationStatusSensor, GetAllocationOperator, AllocationStatusTrigger)
    }
    assert defaults == dict.fromkeys(defaults, OESHook.default_conn_name)
    assert OESHook.default_conn_name == pytest_plugin.OES_CONN_ID
    assert f"AIRFLOW_CONN_{OESHook.default_conn_name.upper()}" == pytest_plugin.OES_CONN_ENV_VAR


def test_extra_defaults_come_from_the_extras_table() -> None:
    import dataclasses

    from airflow_provider_oes._retry import RetryPolicy
    from airflow_provider_oes._settings import OESConnectionSettings

    fields = {f.name: f.default for f in dataclasses.fields(OESConnectionSettings)}
    assert {name: fields[name] for name in EXTRA_FIELDS} == {name: e.default for name, e in EXTRA_FIELDS.items()}
    assert RetryPolicy().max_retries == EXTRA_FIELDS["max_retries"].default
    assert RetryPolicy().max_wait == EXTRA_FIELDS["retry_max_wait"].default
