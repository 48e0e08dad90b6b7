"""The settlement routes' queries: their filters checked one by one, sent as repeated keys.

These routes take array filters as the key repeated (``statuses=pending&statuses=failed``, OpenAPI's
default form style); each filter is checked before any request, naming the argument and the bad value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api.paths import shown
from airflow_provider_oes._api.query import (
    MAX_LIST_PAGE_SIZE,
    currency_value,
    enum_value,
    int_value,
    timestamp_value,
    uuid_value,
)
from airflow_provider_oes._time import format_utc_ms
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.settlement_models import SettlementStatus, SettlementTransferStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

Params = dict[str, "str | list[str]"]
"""Query parameters; a list value is sent as the key repeated (requests and httpx both encode it so)."""

SETTLEMENT_STATUSES = tuple(s.value for s in SettlementStatus)
TRANSFER_STATUSES = tuple(s.value for s in SettlementTransferStatus)
TRANSFER_SORT_FIELDS = ("updatedAt",)
SORT_DIRECTIONS = ("ASC", "DESC")


def _text_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or not value.isprintable():
        raise OESInvalidRequestError(f"{name} must hold non-empty printable strings, got {shown(value)}")
    return value


def _values(check: Callable[[str, object], str]) -> Callable[[str, object], list[str]]:
    def many(name: str, values: object) -> list[str]:
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
            raise OESInvalidRequestError(
                f"{name} must be a list of values (or None for no filter), got {shown(values)}"
            )
        if not values:
            # An empty filter could be read as "no filter" and return everything: the opposite of what was asked.
            raise OESInvalidRequestError(f"{name} must not be empty: pass None for no filter")
        checked = [check(name, value) for value in values]
        # A set has no order: sort it so that the same filter always makes the same URL.
        return sorted(checked) if isinstance(values, (set, frozenset)) else checked

    return many


def _boolean(name: str, value: object) -> str:
    if not isinstance(value, bool):
        raise OESInvalidRequestError(f"{name} must be True, False or None, got {shown(value)}")
    return "true" if value else "false"


def _only_true(name: str, value: object) -> str | None:
    text = _boolean(name, value)
    # onlyShowDisputed=false "has no effect" (the spec): it is simply not sent.
    return text if value else None


def _time(name: str, value: object) -> str:
    moment = timestamp_value(name, value)
    assert moment is not None  # None filters are skipped before
    return format_utc_ms(moment)


_UUIDS = _values(uuid_value)
_TEXTS = _values(_text_value)

SETTLEMENT_FILTERS: dict[str, tuple[str, Any]] = {
    "settlement_ids": ("settlementIds", _UUIDS),
    "only_show_disputed": ("onlyShowDisputed", _only_true),
    "partner_ids": ("partnerIds", _UUIDS),
    "party_connection_ids": ("partyConnectionIds", _UUIDS),
    "counterparty_connection_ids": ("counterpartyConnectionIds", _UUIDS),
    "statuses": ("statuses", _values(enum_value(SETTLEMENT_STATUSES))),
}
"""The settlements list's filters: argument name -> (query name, check)."""

SETTLEMENT_DETAIL_FILTERS: dict[str, tuple[str, Any]] = {
    "currencies": ("currencies", _values(currency_value)),
}
"""The GET of one settlement's filter on its transfers."""

TRANSFER_FILTERS: dict[str, tuple[str, Any]] = {
    "currencies": ("currencies", _values(currency_value)),
    "initiated_by": ("initiatedBy", _TEXTS),
    "partner_ids": ("partnerIds", _UUIDS),
    "settlement_ids": ("settlementIds", _UUIDS),
    "settlement_statuses": ("settlementStatuses", _values(enum_value(SETTLEMENT_STATUSES))),
    "transfer_statuses": ("settlementTransferStatuses", _values(enum_value(TRANSFER_STATUSES))),
    "settlement_updated_on_or_after": ("settlementUpdatedOnOrAfter", _time),
    "settlement_updated_before": ("settlementUpdatedBefore", _time),
    "sort_field": ("sortField", enum_value(TRANSFER_SORT_FIELDS)),
    "sort_direction": ("sortDirection", enum_value(SORT_DIRECTIONS)),
}
"""The settlement transfers list's filters."""

DISPUTE_FILTERS: dict[str, tuple[str, Any]] = {
    "settlement_ids": ("settlementIds", _UUIDS),
    "settled_in_settlement_ids": ("settledInSettlementIds", _UUIDS),
    "connection_ids": ("connectionIds", _UUIDS),
    "partner_ids": ("partnerIds", _UUIDS),
    "closed": ("closed", _boolean),
    "dispute_ids": ("disputeIds", _UUIDS),
    "dispute_closure_ids": ("disputeClosureIds", _UUIDS),
}
"""The client disputes list's filters (``closed``: True closed only, False open only, None all)."""

PARTNER_FILTERS: dict[str, tuple[str, Any]] = {
    "ids": ("ids", _UUIDS),
    "names": ("names", _TEXTS),
    "institution_ids": ("institutionIds", _UUIDS),
    "institution_identifiers": ("institutionIdentifiers", _TEXTS),
    "active": ("active", _boolean),
    "filter_by_trust_org": ("filterByTrustOrg", _boolean),
    "allocation_policies_enabled": ("allocationPoliciesEnabled", _boolean),
}
"""The partners list's filters."""


def query_params(
    spec: Mapping[str, tuple[str, Any]],
    filters: Mapping[str, object],
    *,
    page_number: int = 0,
    page_size: int,
) -> Params:
    """Validate a settlement-area route's filters and return its query (``None`` filters are left out).

    :param spec: The route's filters (one of the ``*_FILTERS`` tables).
    :param filters: Values by argument name.
    :param page_number: Page to fetch, from 0 (``pageNumber``).
    :param page_size: Records per page, 1 to :data:`~airflow_provider_oes._api.MAX_LIST_PAGE_SIZE`; always sent,
        because the API's default page size is not documented and the last page is the first short one.
    :raises OESInvalidRequestError: naming the parameter and the bad value, before any request is sent.
    :raises TypeError: for a filter name the route does not have.
    """
    unknown = sorted(set(filters) - set(spec))
    if unknown:
        raise TypeError(f"unexpected filter(s) {', '.join(map(repr, unknown))}; expected one of {', '.join(spec)}")
    params: Params = {
        "pageNumber": str(int_value("page_number", page_number, 0)),
        "pageSize": str(int_value("page_size", page_size, 1, MAX_LIST_PAGE_SIZE)),
    }
    for argument, (query, check) in spec.items():
        value = filters.get(argument)
        if value is None:
            continue
        encoded = check(argument, value)
        if encoded is not None:
            params[query] = encoded
    after, before = params.get("settlementUpdatedOnOrAfter"), params.get("settlementUpdatedBefore")
    if (
        isinstance(after, str) and isinstance(before, str) and after > before
    ):  # same UTC format: text order is time order
        raise OESInvalidRequestError(
            f"settlement_updated_on_or_after ({after}) must not be later than settlement_updated_before ({before})"
        )
    return params
