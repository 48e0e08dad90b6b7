"""The hook's settlement reads: the same request path as allocations (``_call``), other routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_oes._api import DEFAULT_LIST_PAGE_SIZE
from airflow_provider_oes.exceptions import OESNotFoundError, OESResponseError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator
    from datetime import datetime

    from airflow_provider_oes._request import ApiCall
    from airflow_provider_oes._retry import RetryPolicy
    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes._settlement_api import ListRoute
    from airflow_provider_oes.settlement_models import (
        Dispute,
        ListedSettlement,
        Partner,
        SettlementDetails,
        SettlementTransfer,
    )

T = TypeVar("T")
R = TypeVar("R")


class SettlementReads:
    """The settlement-area reads of :class:`~airflow_provider_oes.hooks.oes.OESHook` (mixed into it)."""

    if TYPE_CHECKING:
        # Provided by OESHook: the one request path and pager these reads share with the allocation reads.
        @property
        def settings(self) -> OESConnectionSettings: ...

        def resolve_enterprise_id(self, enterprise_id: str | None) -> str: ...

        def _call(self, call: ApiCall[T], policy: RetryPolicy | None = None) -> T: ...

        def _paged(
            self,
            page: Callable[[int], list[Any]],
            parse: Callable[[Any, int], R],
            page_size: int,
            what: str,
            enterprise_id: str,
        ) -> Iterator[R]: ...

    def get_settlement(
        self,
        settlement_id: str,
        enterprise_id: str | None = None,
        *,
        currencies: Collection[str] | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> SettlementDetails:
        """Fetch one settlement with all its transfers, the disputes raised against it and those it pays out.

        The route pages the settlement's transfers: pages are fetched until a short one, and put together. If
        the settlement changes between two pages (another ``updatedAt`` or status), the reading starts over, so
        the settlement and its transfers always come from one state of it.

        :param settlement_id: The settlement's UUID.
        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param currencies: Only the transfers in these currencies.
        :param page_size: Transfers per request, 1 to 1,000.
        :raises OESError: a subclass saying what went wrong (404: unknown, or the client is not a party to it).
        """
        from airflow_provider_oes._settlement_api import SettlementReading, validate_settlement_id

        reading = SettlementReading(
            self.settings,
            self.resolve_enterprise_id(enterprise_id),
            validate_settlement_id(settlement_id),
            {"currencies": currencies},
            page_size,
        )
        while (call := reading.next_call()) is not None:
            reading.add(self._call(call))
        assert reading.result is not None  # next_call() returns None only then
        return reading.result

    def list_settlements(
        self,
        enterprise_id: str | None = None,
        *,
        settlement_ids: Collection[str] | None = None,
        statuses: Collection[str] | None = None,
        partner_ids: Collection[str] | None = None,
        party_connection_ids: Collection[str] | None = None,
        counterparty_connection_ids: Collection[str] | None = None,
        only_show_disputed: bool | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> Iterator[ListedSettlement]:
        """Iterate over the client's settlements that match every given filter, page by page.

        The route has no sort and no date filter: records come in the API's order, paged by offset. A settlement
        created or changed while the listing runs may shift the pages; an id seen twice is yielded once.

        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param settlement_ids: Only these settlements (UUIDs).
        :param statuses: Only these statuses: ``pending``, ``failed``, ``completed``, ``rejected``.
        :param partner_ids: Only settlements of these partners (UUIDs).
        :param party_connection_ids: Only settlements in which these connections are a party.
        :param counterparty_connection_ids: Only settlements in which these connections are the counterparty.
        :param only_show_disputed: ``True``: only settlements with disputes (``False`` is the same as ``None``).
        :param page_size: Records per request, 1 to 1,000.
        :raises OESError: when the iterator is created (bad arguments) or while iterating (a failed page).
        """
        from airflow_provider_oes._settlement_api import SETTLEMENTS

        filters = {
            "settlement_ids": settlement_ids,
            "statuses": statuses,
            "partner_ids": partner_ids,
            "party_connection_ids": party_connection_ids,
            "counterparty_connection_ids": counterparty_connection_ids,
            "only_show_disputed": only_show_disputed,
        }
        return self._iter_records(SETTLEMENTS, enterprise_id, filters, page_size)

    def list_settlement_transfers(
        self,
        enterprise_id: str | None = None,
        *,
        settlement_ids: Collection[str] | None = None,
        currencies: Collection[str] | None = None,
        initiated_by: Collection[str] | None = None,
        partner_ids: Collection[str] | None = None,
        settlement_statuses: Collection[str] | None = None,
        transfer_statuses: Collection[str] | None = None,
        settlement_updated_on_or_after: datetime | str | None = None,
        settlement_updated_before: datetime | str | None = None,
        sort_field: str | None = None,
        sort_direction: str | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> Iterator[SettlementTransfer]:
        """Iterate over the client's settlement transfers that match every given filter, page by page.

        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param settlement_ids: Only transfers of these settlements (UUIDs).
        :param currencies: Only these currencies.
        :param initiated_by: Only transfers of settlements started by these users.
        :param partner_ids: Only transfers of settlements started by these partners (UUIDs).
        :param settlement_statuses: Only transfers whose settlement has one of these statuses.
        :param transfer_statuses: Only transfers with these statuses (``completed``, ``pending``, ...).
        :param settlement_updated_on_or_after: Only transfers whose **settlement**'s ``updatedAt`` is at or after
            this time (time-zone aware datetime or ISO 8601 string).
        :param settlement_updated_before: Only transfers whose settlement's ``updatedAt`` is before this time.
        :param sort_field: ``updatedAt`` (the only value the API has), or ``None`` for the API's order.
        :param sort_direction: ``ASC`` or ``DESC``.
        :param page_size: Records per request, 1 to 1,000.
        :raises OESError: when the iterator is created (bad arguments) or while iterating (a failed page).
        """
        from airflow_provider_oes._settlement_api import TRANSFERS

        filters = {
            "settlement_ids": settlement_ids,
            "currencies": currencies,
            "initiated_by": initiated_by,
            "partner_ids": partner_ids,
            "settlement_statuses": settlement_statuses,
            "transfer_statuses": transfer_statuses,
            "settlement_updated_on_or_after": settlement_updated_on_or_after,
            "settlement_updated_before": settlement_updated_before,
            "sort_field": sort_field,
            "sort_direction": sort_direction,
        }
        return self._iter_records(TRANSFERS, enterprise_id, filters, page_size)

    def list_settlement_disputes(
        self,
        enterprise_id: str | None = None,
        *,
        settlement_ids: Collection[str] | None = None,
        settled_in_settlement_ids: Collection[str] | None = None,
        connection_ids: Collection[str] | None = None,
        partner_ids: Collection[str] | None = None,
        closed: bool | None = None,
        dispute_ids: Collection[str] | None = None,
        dispute_closure_ids: Collection[str] | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> Iterator[Dispute]:
        """Iterate over the disputes of the client's settlements that match every given filter, page by page.

        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param settlement_ids: Only disputes raised against these settlements (``disputedSettlementId``).
        :param settled_in_settlement_ids: Only disputes paid out in these settlements.
        :param connection_ids: Only disputes of these connections.
        :param partner_ids: Only disputes of settlements started by these partners.
        :param closed: ``True``: closed ones only; ``False``: open ones only; ``None``: all.
        :param dispute_ids: Only these disputes.
        :param dispute_closure_ids: Only disputes closed by these closures.
        :param page_size: Records per request, 1 to 1,000.
        :raises OESError: when the iterator is created (bad arguments) or while iterating (a failed page).
        """
        from airflow_provider_oes._settlement_api import DISPUTES

        filters = {
            "settlement_ids": settlement_ids,
            "settled_in_settlement_ids": settled_in_settlement_ids,
            "connection_ids": connection_ids,
            "partner_ids": partner_ids,
            "closed": closed,
            "dispute_ids": dispute_ids,
            "dispute_closure_ids": dispute_closure_ids,
        }
        return self._iter_records(DISPUTES, enterprise_id, filters, page_size)

    def list_partners(
        self,
        enterprise_id: str | None = None,
        *,
        ids: Collection[str] | None = None,
        names: Collection[str] | None = None,
        institution_ids: Collection[str] | None = None,
        institution_identifiers: Collection[str] | None = None,
        active: bool | None = None,
        filter_by_trust_org: bool | None = None,
        allocation_policies_enabled: bool | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> Iterator[Partner]:
        """Iterate over the partners that match every given filter, with their dispute and top-up windows.

        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param ids: Only these partners (UUIDs).
        :param names: Only partners with these names.
        :param institution_ids: Only partners of these institutions (UUIDs).
        :param institution_identifiers: Only partners with these institution identifiers.
        :param active: Only active (``True``) or inactive (``False``) partners.
        :param filter_by_trust_org: The API's ``filterByTrustOrg``.
        :param allocation_policies_enabled: The API's ``allocationPoliciesEnabled``.
        :param page_size: Records per request, 1 to 1,000.
        :raises OESError: when the iterator is created (bad arguments) or while iterating (a failed page).
        """
        from airflow_provider_oes._settlement_api import PARTNERS

        filters = {
            "ids": ids,
            "names": names,
            "institution_ids": institution_ids,
            "institution_identifiers": institution_identifiers,
            "active": active,
            "filter_by_trust_org": filter_by_trust_org,
            "allocation_policies_enabled": allocation_policies_enabled,
        }
        return self._iter_records(PARTNERS, enterprise_id, filters, page_size)

    def get_partner(self, partner_id: str, enterprise_id: str | None = None) -> Partner:
        """Fetch one partner (the API has no GET by id: the list, filtered on the id).

        :param partner_id: The partner's UUID (a settlement's ``partner_id``).
        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :raises OESNotFoundError: when the list does not hold it.
        """
        enterprise_id = self.resolve_enterprise_id(enterprise_id)
        for partner in self.list_partners(enterprise_id, ids=[partner_id], page_size=1):
            if partner.id.lower() == partner_id.lower():
                return partner
            raise OESResponseError(
                f"the OES API answered with partner {partner.id!r} when asked for partner {partner_id!r} "
                f"of enterprise {enterprise_id!r}; refusing to use it",
                enterprise_id=enterprise_id,
            )
        raise OESNotFoundError(
            f"partner {partner_id!r} is not among the partners of enterprise {enterprise_id!r}",
            enterprise_id=enterprise_id,
        )

    def _iter_records(
        self, route: ListRoute, enterprise_id: str | None, filters: dict[str, Any], page_size: int
    ) -> Iterator[Any]:
        """Check every argument now (not at the first ``next()``), then page through ``route`` lazily."""
        from airflow_provider_oes._settlement_query import query_params

        resolved = self.resolve_enterprise_id(enterprise_id)
        query_params(route.filters, filters, page_size=page_size)
        return self._pages(route, resolved, filters, page_size)

    def _pages(self, route: ListRoute, enterprise_id: str, filters: dict[str, Any], page_size: int) -> Iterator[Any]:
        from airflow_provider_oes._settlement_api import parse_record
        from airflow_provider_oes._settlement_query import query_params

        what = f"{route.subject} of enterprise {enterprise_id!r}"

        def page(page_number: int) -> list[Any]:
            params = query_params(route.filters, filters, page_number=page_number, page_size=page_size)
            return self._call(route.call(self.settings, enterprise_id, params))

        def parse(record: Any, position: int) -> Any:
            return parse_record(route.model, record, what=what, enterprise_id=enterprise_id, position=position)

        return self._paged(page, parse, page_size, what, enterprise_id)
