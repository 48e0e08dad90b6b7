"""The partners' dispute windows, read through the async client and cached: ``disputeWindowEndsAt`` of a settlement."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api.paths import UUID
from airflow_provider_oes._settlement_api import PARTNERS, parse_record
from airflow_provider_oes._time import format_utc_ms
from airflow_provider_oes.settlement_models import ListedSettlement, Partner, dispute_window_end
from airflow_provider_oes.triggers._settlement_watch.records import WINDOW_END_FIELD, status_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from airflow_provider_oes.hooks.async_client import OESAsyncClient

log = logging.getLogger("airflow_provider_oes.triggers.settlement_event")

PARTNER_TTL = 3600.0
"""Seconds a partner's windows are reused before they are read again (they change rarely)."""
PARTNER_BATCH = 100
"""Partner ids per ``GET .../partners?ids=...``."""


class PartnerWindows:
    """Each partner's settings, read once per :data:`PARTNER_TTL` (a partner not read yet is read at once).

    :param client: The connection's async client.
    :param enterprise_id: The client's enterprise.
    :param clock: Monotonic clock (tests).
    """

    def __init__(self, client: OESAsyncClient, enterprise_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._enterprise_id = enterprise_id
        self._clock = clock
        self._partners: dict[str, tuple[Partner | None, float]] = {}
        self.requests = 0

    async def refresh(self, partner_ids: Iterable[str]) -> None:
        """Read the partners not known, or known for longer than :data:`PARTNER_TTL`."""
        now = self._clock()
        due = sorted(
            {
                p.lower()
                for p in partner_ids
                if UUID.fullmatch(p) and now - self._partners.get(p.lower(), (None, -PARTNER_TTL))[1] >= PARTNER_TTL
            }
        )
        for start in range(0, len(due), PARTNER_BATCH):
            batch = due[start : start + PARTNER_BATCH]
            page = await self._client.list_route_page(
                PARTNERS, self._enterprise_id, {"ids": batch}, page_size=len(batch)
            )
            self.requests += 1
            found: dict[str, Partner] = {}
            for position, record in enumerate(page.records):
                partner = parse_record(
                    Partner, record, what="the partners list", enterprise_id=self._enterprise_id, position=position
                )
                found[partner.id.lower()] = partner
            for partner_id in batch:
                if partner_id not in found:
                    log.warning(
                        "Partner %s is not in the partners list: its settlements get no disputeWindowEndsAt.",
                        partner_id,
                    )
                self._partners[partner_id] = (found.get(partner_id), now)

    def window_end(self, settlement: ListedSettlement) -> str | None:
        """When the client's dispute window of a **pending** settlement closes (``None`` otherwise, or for a
        partner without disputes): ``createdAt`` + ``clientDisputeWindowMinutes`` (``docs/settlements.rst``)."""
        if status_text(settlement) != "pending":
            return None
        partner = self._partners.get(settlement.partner_id.lower(), (None, 0.0))[0]
        if partner is None:
            return None
        end = dispute_window_end(settlement, partner)
        return None if end is None else format_utc_ms(end)

    async def annotate(self, records: list[Any], enterprise_id: str) -> list[Any]:
        """The records with ``disputeWindowEndsAt`` set (an invalid record is passed on as it is: the watcher
        logs and skips it, naming it)."""
        models: list[tuple[dict[str, Any], ListedSettlement | None]] = []
        for record in records:
            try:
                model = ListedSettlement.model_validate(record)
            except Exception:
                model = None
            models.append((record, model))
        await self.refresh(m.partner_id for _, m in models if m is not None and status_text(m) == "pending")
        out: list[Any] = []
        for record, model in models:
            if model is None or not isinstance(record, dict):
                out.append(record)
                continue
            out.append({**record, WINDOW_END_FIELD: self.window_end(model)})
        return out
