"""One real Airflow stack (api-server, scheduler, dag-processor, triggerer) for the whole full-stack module.

The components start once (about 20 s on an idle 2-core machine) and are always stopped, with every task
runner they spawned, when the module's tests are done. The OES simulator runs in this test process (a
uvicorn thread on 127.0.0.1); every component reaches it through ``AIRFLOW_CONN_OES_DEFAULT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fullstack._support import BATCH_SIZE
from tests.harness.fullstack import FullStack, oes_connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_oes.testing.simulator import OESSimulator


@pytest.fixture(scope="module")
def fullstack_simulator() -> Iterator[OESSimulator]:
    """A simulator of this module's own (the session one is reset by other tests' fixtures)."""
    from airflow_provider_oes.testing.simulator import OESSimulator

    with OESSimulator(port=0) as sim:
        yield sim


@pytest.fixture(scope="module")
def fullstack(fullstack_simulator: OESSimulator) -> Iterator[FullStack]:
    """The running stack; stopped (with every descendant process) after the module, pass or fail.

    :param fullstack_simulator: The simulator the ``oes_default`` connection points at.
    """
    sim = fullstack_simulator
    stack = FullStack(oes_connection_json(sim.url, sim.token, sim.enterprise_id, batch_size=BATCH_SIZE))
    with stack:
        stack.start()
        yield stack
