"""Load the OES pytest plugin for these tests when its entry point is not installed; the ``api`` fixture."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pytest

from tests.testing._api import Api

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator

PLUGIN_MODULE = "airflow_provider_oes.testing.pytest_plugin"


def pytest_configure(config: pytest.Config) -> None:
    """
    Register the plugin module unless pytest already loaded it (entry point ``oes`` or otherwise).

    :param config: the pytest config.
    """
    config.pluginmanager.import_plugin("pytester")  # for the test that runs the plugin's fixtures in a fresh run
    module = importlib.import_module(PLUGIN_MODULE)
    manager = config.pluginmanager
    if not manager.is_registered(module) and not manager.has_plugin("oes"):
        manager.register(module, PLUGIN_MODULE)


@pytest.fixture
def api(oes_simulator: OESSimulator) -> Iterator[Api]:
    """
    A raw HTTP client bound to the (reset) session simulator.

    :param oes_simulator: the simulator fixture.
    """
    client = Api(oes_simulator)
    yield client
    client.session.close()
