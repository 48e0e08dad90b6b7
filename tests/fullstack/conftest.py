"""One real Airflow stack (api-server, scheduler, dag-processor, triggerer) shared by the full-stack tests.

The stack runs on a private PostgreSQL server (``$OES_STACK_DB=sqlite`` runs it on SQLite instead). The
components start once per test package (about 30-40 s on an idle 2-core machine, most of it ``airflow db
migrate`` and the API server's start) and are always stopped, with every task runner they spawned and the
PostgreSQL server and its data directory, when the package's tests are done, pass or fail. The OES
simulator runs in this test process (a uvicorn thread on 127.0.0.1); every component reaches it through
``AIRFLOW_CONN_OES_DEFAULT``.

Tests that change the set of triggerers say what they leave behind: each test that needs N triggerers
starts or stops them itself (:func:`tests.fullstack._support.use_triggerers`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.fullstack._support import BATCH_SIZE, EVENT_POLL_INTERVAL
from tests.harness.fullstack import FullStack, oes_connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator


@pytest.fixture(scope="package")
def fullstack_simulator() -> Iterator[OESSimulator]:
    """A simulator of this package's own (the session one is reset by other tests' fixtures)."""
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        yield sim


@pytest.fixture(scope="package")
def fullstack(fullstack_simulator: OESSimulator) -> Iterator[FullStack]:
    """The running stack; stopped (with every descendant process and its database) after the package.

    :param fullstack_simulator: The simulator the ``oes_default`` connection points at.
    """
    sim = fullstack_simulator
    connection = json.loads(oes_connection_json(sim.url, sim.token, sim.enterprise_id, batch_size=BATCH_SIZE))
    # These tests count the id-batch sweeps; the change feed (the default) has test_fleet_start_from_trigger.py.
    connection["extra"]["poll_strategy"] = "id_batches"
    env = {
        # The event-driven example (paused until test_triggerer_failover.py unpauses it) watches this enterprise.
        "OES_ENTERPRISE_ID": sim.enterprise_id,
        "OES_EVENT_POLL_INTERVAL": str(EVENT_POLL_INTERVAL),
        # Each triggerer claims at most 10 triggers per loop (50 by default), so two triggerers both get some of
        # a fleet that defers at once, as [triggerer] max_trigger_to_select_per_loop is meant for in HA setups.
        "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "10",
    }
    stack = FullStack(json.dumps(connection), env=env)
    with stack:
        stack.start()
        yield stack
