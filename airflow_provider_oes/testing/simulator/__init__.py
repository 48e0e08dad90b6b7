"""
A local simulator of BitGo's Off-Exchange Settlement (OES) client-allocation API.

It is a real HTTP server (a FastAPI app served by uvicorn, bound to ``127.0.0.1`` only) that answers

* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations/{allocationId}`` and
* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations`` (the list),

with the response and error shapes of the public API, so that demos, the provider's tests and users'
own DAG tests run offline. Allocations follow a scripted timeline (reserved for N seconds or N reads,
then cleared/released), and faults (HTTP 5xx/429, slow answers, dropped connections, malformed
bodies) can be queued.

Three ways to run it:

* in-process: ``with OESSimulator() as sim: ...`` (uvicorn in a background thread);
* from the shell: ``python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo``;
* in a child process from Python: ``with OESSimulatorProcess() as proc: proc.client.add_allocation()``.

The package, one concern per module:

* :mod:`._common`: defaults, the API's enumerations, date and error formatting;
* :mod:`.state`: allocations and their timelines, memberships, served requests;
* :mod:`.faults`: fault kinds, the fault queue, record corruption;
* :mod:`.gateway`: what runs before the routes (request counting, transport faults);
* :mod:`.api_routes`: the API, one function per endpoint of BitGo's spec;
* :mod:`.control_routes`: the JSON control API under ``/_sim/`` (no auth, not counted);
* :mod:`.scripting`: the Python scripting API (:class:`OESSimulator` inherits it);
* :mod:`.server`: :class:`OESSimulator`, the app served by uvicorn in a thread;
* :mod:`.remote`: :class:`OESSimulatorClient` and :class:`OESSimulatorProcess`;
* :mod:`.cli` and ``__main__``: the command line.

Semantics worth knowing:

* Auth is checked first (401), then request validation (400), then enterprise membership (401),
  then the OES license (403), then the allocation lookup (404).
* A "read" (for ``reserved_for_reads``) is counted each time the genuine record is served, by the
  single GET or as an item of a list page. Responses replaced by a fault do not count as reads,
  except ``slow``, which answers normally.
* List paging: ``pageNumber`` from 0 (default 0), ``pageSize`` from 1 to 1000 (default 100); anything
  else is a 400. Results are sorted by ``createdAt`` then ``id`` (after ``sortField``, if given).
  ``partnerIds`` is accepted and ignored (records carry no partner id).
* Faults form a FIFO queue. Each API request takes at most one fault: the first queued fault that
  matches it (``allocation_id=None`` matches every request; an id matches the single GET of that id
  and list requests whose ``allocationIds`` contain it). Transport faults (``500``, ``502``,
  ``503``, ``429``, ``slow``, ``drop``, ``non_json``) are taken before auth and validation; record
  faults (``missing_fields``, ``wrong_types``, ``unknown_status``, ``wrong_id``) are taken only by a
  request that would otherwise answer 200, and in a list apply to every item.
"""

from __future__ import annotations

from airflow_provider_oes.testing.simulator._common import (
    DEFAULT_CONNECTION_ID,
    DEFAULT_ENTERPRISE_ID,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOKEN,
    MAX_PAGE_SIZE,
    UNLICENSED_ENTERPRISE_ID,
)
from airflow_provider_oes.testing.simulator.cli import main, seed_demo
from airflow_provider_oes.testing.simulator.faults import FAULT_KINDS
from airflow_provider_oes.testing.simulator.remote import OESSimulatorClient, OESSimulatorProcess
from airflow_provider_oes.testing.simulator.server import OESSimulator

__all__ = [
    "DEFAULT_CONNECTION_ID",
    "DEFAULT_ENTERPRISE_ID",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TOKEN",
    "FAULT_KINDS",
    "MAX_PAGE_SIZE",
    "UNLICENSED_ENTERPRISE_ID",
    "OESSimulator",
    "OESSimulatorClient",
    "OESSimulatorProcess",
    "main",
    "seed_demo",
]
