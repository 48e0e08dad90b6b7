"""
A local simulator of BitGo's Off-Exchange Settlement (OES) client-allocation API.

It is a real HTTP server (a FastAPI app served by uvicorn, bound to ``127.0.0.1`` only) that answers

* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations/{allocationId}`` and
* ``GET /api/network/v1/enterprises/{enterpriseId}/clients/allocations`` (the list),
* the settlement read routes: ``.../clients/settlements`` (list and by id), ``.../clients/settlementTransfers``,
  ``.../clients/settlement/disputes`` and ``.../partners`` (:mod:`.settlement_routes`),

with the response and error shapes of the public API, so that demos, the provider's tests and users'
own DAG tests run offline. Allocations follow a scripted timeline (reserved for N seconds or N reads,
then cleared/released), and faults (HTTP 5xx/429, slow answers, dropped connections, malformed
bodies) can be queued.

Three ways to run it:

* in-process: ``with OESSimulator() as sim: ...`` (uvicorn in a background thread);
* from the shell: ``python -m airflow_provider_oes.testing.simulator --port 8080 --seed-demo``;
* in a child process from Python: ``with OESSimulatorProcess() as proc: proc.client.add_allocation()``.

The package, one concern per module:

* :mod:`._common`: defaults, the API's enumerations, the simulator's clock, date and error formatting;
* :mod:`.state`: allocations, timelines and scheduled flips, memberships, tokens, requests seen;
* :mod:`.feed_index`: final allocations kept sorted by ``updatedAt`` (feed pages without sorting);
* :mod:`.queries`: the list endpoint's filters, sorts and paging over the state;
* :mod:`.faults`: fault kinds, the fault queue, record corruption;
* :mod:`.rate_limit`: BitGo's limit per access token (sliding window);
* :mod:`.gateway`: what runs before the routes (counting, rate limit, transport faults, ``Date``);
* :mod:`.api_routes`: the API, one function per endpoint of BitGo's spec;
* :mod:`.settlement_state`, :mod:`.settlement_routes`, :mod:`.settlement_scripting`: partners, settlements
  (v1 final at once; v2 pending through the dispute and top-up windows), transfers and disputes;
* :mod:`.control_routes`: the JSON control API under ``/_sim/`` (no auth, not counted);
* :mod:`.scripting` and :mod:`.conditions`: the Python scripting API (:class:`OESSimulator` inherits it);
* :mod:`.server`: :class:`OESSimulator`, the app served by uvicorn in a thread;
* :mod:`.remote`: :class:`OESSimulatorClient` and :class:`OESSimulatorProcess`;
* :mod:`.cli` and ``__main__``: the command line.

Semantics worth knowing:

* Per access token, at most 360 requests in any 60 s (configurable, or none): beyond it 429 with
  ``Retry-After``. Then auth (401), request validation (400, including an ``enterprise-id`` header that
  disagrees with the path), enterprise membership (401), the OES license (403), the lookup (404).
* Every status change stamps ``updatedAt`` from the simulator's clock (machine clock + an offset);
  answers carry ``Date`` from that clock. Timelines counted in reads advance only when the record is
  served (single GET or list item): feed tests use time-based timelines or explicit flips.
* List: ``pageNumber`` from 0 (default 0), ``pageSize`` from 1 to 1000 (default 100); ``sortField``
  ``id``/``updatedAt``/``quantity``/``currency``, ``sortDirection`` ``ASC``/``DESC``, then always
  ``createdAt`` asc and ``id`` asc; ``createdBefore`` is inclusive, as the spec describes it. Any
  other value is a 400 naming it.
* Faults form a FIFO queue. Each API request takes at most one fault: the first queued fault that
  matches it (``allocation_id=None`` matches every request; an id matches the single GET of that id
  and list requests whose ``allocationIds`` contain it). Transport faults (``500``, ``502``,
  ``503``, ``429``, ``slow``, ``drop``, ``non_json``) are taken before auth and validation; record
  faults (``missing_fields``, ``wrong_types``, ``unknown_status``, ``wrong_id``) are taken only by a
  request that would otherwise answer 200, and in a list apply to every item.
"""

from __future__ import annotations

from airflow_provider_oes.testing.simulator._common import (
    BITGO_RATE_LIMIT,
    DEFAULT_CONNECTION_ID,
    DEFAULT_ENTERPRISE_ID,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PARTNER_ID,
    DEFAULT_TOKEN,
    ENTERPRISE_HEADER,
    MAX_PAGE_SIZE,
    UNLICENSED_ENTERPRISE_ID,
)
from airflow_provider_oes.testing.simulator.cli import main, seed_demo
from airflow_provider_oes.testing.simulator.faults import FAULT_KINDS
from airflow_provider_oes.testing.simulator.remote import OESSimulatorClient, OESSimulatorProcess
from airflow_provider_oes.testing.simulator.server import OESSimulator

__all__ = [
    "BITGO_RATE_LIMIT",
    "DEFAULT_CONNECTION_ID",
    "DEFAULT_ENTERPRISE_ID",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_PARTNER_ID",
    "DEFAULT_TOKEN",
    "ENTERPRISE_HEADER",
    "FAULT_KINDS",
    "MAX_PAGE_SIZE",
    "UNLICENSED_ENTERPRISE_ID",
    "OESSimulator",
    "OESSimulatorClient",
    "OESSimulatorProcess",
    "main",
    "seed_demo",
]
