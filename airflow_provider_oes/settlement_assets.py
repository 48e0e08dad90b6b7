"""Settlements as Airflow asset events: the asset URI convention and what a consuming run acts on.

A :class:`~airflow_provider_oes.triggers.settlement_event.SettlementEventTrigger` watching an asset emits
events whose payload is ``{"settlements": [...], "enterprise_id": ..., ...}`` (each settlement in the API's
JSON shape plus ``disputeWindowEndsAt``); Airflow stores it as ``extra={"from_trigger": True, "payload": ...}``.
:func:`new_settlements` reads a run's triggering events with the same rules as
:func:`~airflow_provider_oes.assets.new_allocations`. Nothing here imports Airflow at module import time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._consuming import (
    DEFAULT_PAGE_SIZE,
    asset_uri,
    new_records,
    records_from_asset_event,
)
from airflow_provider_oes._event_reading import RecordKind
from airflow_provider_oes.models import SETTLEMENTS_PAYLOAD_KEY
from airflow_provider_oes.settlement_models import SettlementStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["SETTLEMENTS", "new_settlements", "settlements_asset_uri", "settlements_from_asset_event"]

SETTLEMENTS = RecordKind(
    noun="settlement",
    payload_key=SETTLEMENTS_PAYLOAD_KEY,
    outlet_key=None,
    statuses=tuple(status.value for status in SettlementStatus),
    status_words="settlement statuses",
    log=logging.getLogger(__name__),
)
"""Settlements on asset events: a watcher's ``payload["settlements"]``. A consumer may act on any status a
settlement watcher emits: ``pending`` (new, to review in its dispute window), ``completed`` and ``rejected``
(final), ``failed`` (not final: BitGo retries it)."""


def settlements_asset_uri(enterprise_id: str, status: str = "pending") -> str:
    """The suggested asset URI for settlements of an enterprise in ``status``.

    ``oes://<enterprise id>/settlements/<status>``, e.g. ``oes://5f1c.../settlements/pending`` for new
    settlements to review, or ``.../settlements/final`` for a watcher of ``completed`` and ``rejected``. Define
    each URI once, with one watcher, so two DAG files never describe the same asset differently.

    :param enterprise_id: The client's enterprise id (validated like every id sent to the API).
    :param status: The last path segment: a word such as ``pending`` or ``final``.
    """
    return asset_uri(SETTLEMENTS, enterprise_id, status)


def settlements_from_asset_event(event: Any) -> list[dict[str, Any]]:
    """The settlements an asset event carries, in the API's JSON shape (with ``disputeWindowEndsAt``).

    :param event: An asset event as a downstream task sees it (``triggering_asset_events[asset][i]`` or
        ``inlet_events``), or its ``extra`` dict.
    :returns: ``[]`` when the event carries no settlement (e.g. it came from elsewhere).
    """
    return records_from_asset_event(SETTLEMENTS, event)


def new_settlements(
    asset: Any,
    triggering_asset_events: Any,
    inlet_events: Any,
    *,
    statuses: Iterable[str] | None = None,
    acknowledge: bool = False,
    context: Mapping[str, Any] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[dict[str, Any]]:
    """The settlements this run must act on: those of its triggering events of ``asset`` in ``statuses`` that no
    other run took on, each once.

    The same rules as :func:`~airflow_provider_oes.assets.new_allocations`, in a task that lists ``asset`` in
    its ``inlets``::

        @task(inlets=[NEW_SETTLEMENTS])
        def to_review(triggering_asset_events=None, inlet_events=None):
            return new_settlements(NEW_SETTLEMENTS, triggering_asset_events, inlet_events, statuses=["pending"],
                                   acknowledge=True)

    Repeats are matched on (id, status, ``updatedAt``): a settlement whose ``updatedAt`` moved while it stayed
    ``pending`` (a dispute raised, say) is a new delivery; records of other statuses are logged and left out.
    With ``acknowledge`` (Airflow 3.3+) the run writes ``oes-ack/<DAG id>/<id>/<status>/<updatedAt>`` to the
    asset's state store for each settlement it returns, and leaves out what another run of the DAG
    acknowledged, so a watcher with ``acknowledged_by`` re-emits only what no run took on (see
    ``docs/event-driven-acknowledgements.rst``). A cleared and re-run run gets the same settlements again.

    :param asset: The asset the run was triggered by.
    :param triggering_asset_events: The task's ``triggering_asset_events``.
    :param inlet_events: The task's ``inlet_events``.
    :param statuses: The statuses to act on (default: every settlement status).
    :param acknowledge: Record what the run takes on in the asset's state store, and drop what another run
        acknowledged.
    :param context: The task's context (default: the running task's, from ``get_current_context()``); read
        only with ``acknowledge``: ``dag_run``, ``asset_state_store``.
    :param page_size: Asset events read per request.
    """
    return new_records(
        SETTLEMENTS,
        asset,
        triggering_asset_events,
        inlet_events,
        statuses=statuses,
        acknowledge=acknowledge,
        context=context,
        page_size=page_size,
    )
