"""The list endpoint's query: one frozen :class:`ListQuery` for hook, operator, change feed and watcher."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_provider_oes._api.paths import UUID, shown
from airflow_provider_oes._constants import DEFAULT_LIST_PAGE_SIZE
from airflow_provider_oes._time import format_utc_ms, parse_iso
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.models import STATUS_VALUES, TYPE_VALUES

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from typing_extensions import Unpack

    from airflow_provider_oes.models import Allocation

LIST_SORT_FIELDS = ("id", "updatedAt", "quantity", "currency")
"""Values of ``sortField``. Whatever it is, the API then orders by ``createdAt`` and ``id`` ascending."""
LIST_SORT_DIRECTIONS = ("ASC", "DESC")
"""Values of ``sortDirection`` (the API's default is ``ASC``)."""
MAX_LIST_PAGE_SIZE = 1000
"""The largest page this package asks for: a page of 1,000 allocations is about 1 MB."""
LIST_UNUSABLE_STATUS_CODES = frozenset({400, 404, 405, 501})
"""A list request answered with one of these: the list endpoint itself (or this query) is not usable here."""

_CURRENCY = re.compile(r"[A-Za-z0-9:_.\-]{1,64}")


def _csv_values(name: str, values: object, check: Callable[[str, object], str]) -> tuple[str, ...] | None:
    """A filter's values, each checked; ``None`` (no filter) stays ``None``."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise OESInvalidRequestError(f"{name} must be a list of values (or None for no filter), got {shown(values)}")
    if not values:
        # An empty parameter could be read as "no filter" and return everything: the opposite of what was asked.
        raise OESInvalidRequestError(f"{name} must not be empty: pass None for no filter")
    checked = [check(name, value) for value in values]
    # A set has no order: sort it so that the same filter always makes the same URL.
    return tuple(sorted(checked) if isinstance(values, (set, frozenset)) else checked)


def uuid_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not UUID.fullmatch(value):
        raise OESInvalidRequestError(f"{name} must hold UUIDs, got {shown(value)}")
    return value


def enum_value(allowed: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        # A str-based Enum (AllocationStatus.CLEARED) counts as its value.
        raw = value.value if isinstance(value, Enum) else value
        if not isinstance(raw, str) or raw not in allowed:
            raise OESInvalidRequestError(f"{name} values must be one of {', '.join(allowed)}; got {shown(value)}")
        return raw

    return check


def currency_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise OESInvalidRequestError(
            f"{name} must hold currency codes (letters, digits, ':', '_', '.', '-'), got {shown(value)}"
        )
    return value


def timestamp_value(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    moment = parse_iso(value.strip()) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise OESInvalidRequestError(
            f"{name} must be a datetime or an ISO 8601 string like '2026-11-24T00:00:00Z', got {shown(value)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time would be read in whatever zone the worker runs in: a silent shift of the window.
        raise OESInvalidRequestError(f"{name} must carry a time zone (e.g. UTC), got {shown(value)}")
    return moment.astimezone(timezone.utc)


def int_value(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise OESInvalidRequestError(f"{name} must be an integer {bound}, got {shown(value)}")
    return value


class ListFilters(TypedDict, total=False):
    """The list endpoint's filters by argument name, as DAG authors pass them (see :class:`ListQuery`).

    :meth:`OESHook.list_allocations <airflow_provider_oes.hooks.oes.OESHook.list_allocations>` and
    :class:`~airflow_provider_oes.operators.allocation.ListAllocationsOperator` spell them out as keyword
    arguments (a test checks they match this set); an operator's templated filters are rendered after the
    operator is built, so they are checked only when the query is made.
    """

    allocation_ids: Collection[str] | None
    statuses: Collection[str] | None
    types: Collection[str] | None
    currencies: Collection[str] | None
    connection_ids: Collection[str] | None
    partner_ids: Collection[str] | None
    created_on_or_after: datetime | str | None
    created_before: datetime | str | None
    sort_field: str | None
    sort_direction: str | None


LIST_FILTER_NAMES: tuple[str, ...] = tuple(ListFilters.__annotations__)
"""The names of :class:`ListFilters`, in the order the list endpoint's filters are checked."""

_LIST_VALUE_FILTERS: tuple[tuple[str, str, Callable[[str, object], str]], ...] = (
    ("allocation_ids", "allocationIds", uuid_value),
    ("statuses", "statuses", enum_value(STATUS_VALUES)),
    ("types", "types", enum_value(TYPE_VALUES)),
    ("currencies", "currencies", currency_value),
    ("connection_ids", "connectionIds", uuid_value),
    ("partner_ids", "partnerIds", uuid_value),
)
"""The comma-separated list filters: argument name, query-parameter name, and the check of each value."""

LIST_FILTER_QUERY_NAMES: dict[str, str] = {argument: query for argument, query, _ in _LIST_VALUE_FILTERS}
"""The query-parameter name of each comma-separated list filter, by argument name."""


@dataclass(frozen=True)
class ListQuery:
    """The list endpoint's filters, checked when built; ``None`` means "no filter" on that field.

    A list filter must hold at least one value; its values keep the order given (a set's are sorted).
    :meth:`canonical` sorts and deduplicates them, so that equal filters make equal keys (the change feed's).

    :param allocation_ids: Only these allocations (UUIDs; ``allocationIds``).
    :param statuses: Only these statuses: ``cleared``, ``released``, ``reserved`` (``statuses``).
    :param types: Only ``allocation`` and/or ``deallocation`` records (``types``).
    :param currencies: Only these currencies, e.g. ``["ofctbtc"]`` (``currencies``).
    :param connection_ids: Only records of these connections (UUIDs; ``connectionIds``).
    :param partner_ids: Only records of these partners (UUIDs; ``partnerIds``).
    :param created_on_or_after: Only records created at or after this time (time-zone aware datetime or ISO
        8601 string; ``createdOnOrAfter``).
    :param created_before: Only records created before this time (``createdBefore``; the spec's text says
        "on or before": do not count on the bound itself either way).
    :param sort_field: ``id``, ``updatedAt``, ``quantity`` or ``currency``; ``None`` keeps the API's order,
        ``createdAt`` then ``id`` ascending (``sortField``).
    :param sort_direction: ``ASC`` or ``DESC`` for ``sort_field`` (``sortDirection``).
    :raises OESInvalidRequestError: naming the parameter and the bad value.
    """

    allocation_ids: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    currencies: tuple[str, ...] | None = None
    connection_ids: tuple[str, ...] | None = None
    partner_ids: tuple[str, ...] | None = None
    created_on_or_after: datetime | None = None
    created_before: datetime | None = None
    sort_field: str | None = None
    sort_direction: str | None = None

    def __post_init__(self) -> None:
        for argument, _query, check in _LIST_VALUE_FILTERS:
            object.__setattr__(self, argument, _csv_values(argument, getattr(self, argument), check))
        after = timestamp_value("created_on_or_after", self.created_on_or_after)
        before = timestamp_value("created_before", self.created_before)
        if after is not None and before is not None and after > before:
            raise OESInvalidRequestError(
                f"created_on_or_after ({format_utc_ms(after)}) must not be later than created_before "
                f"({format_utc_ms(before)})"
            )
        object.__setattr__(self, "created_on_or_after", after)
        object.__setattr__(self, "created_before", before)
        if self.sort_field is not None:
            enum_value(LIST_SORT_FIELDS)("sort_field", self.sort_field)
        if self.sort_direction is not None:
            enum_value(LIST_SORT_DIRECTIONS)("sort_direction", self.sort_direction)

    @classmethod
    def of(cls, **filters: Unpack[ListFilters]) -> ListQuery:
        """Build from filters by argument name (a misspelt one is a :class:`TypeError` naming the set)."""
        unknown = sorted(set(filters) - set(LIST_FILTER_NAMES))
        if unknown:
            raise TypeError(
                f"list_query_params() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                f"the list filters are {', '.join(LIST_FILTER_NAMES)}"
            )
        return cls(**filters)  # type: ignore[arg-type]

    def canonical(self) -> ListQuery:
        """The same filters with each list sorted and deduplicated (equal filters, equal queries)."""
        changes: dict[str, Any] = {
            argument: tuple(sorted(set(values)))
            for argument, _query, _check in _LIST_VALUE_FILTERS
            if (values := getattr(self, argument)) is not None
        }
        return replace(self, **changes)

    def filters(self) -> ListFilters:
        """The filters that are set, by argument name."""
        named: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in named.items() if value is not None}  # type: ignore[return-value]

    def filter_params(self) -> dict[str, str]:
        """The query parameters of the filters (no paging), as the list endpoint takes them."""
        params: dict[str, str] = {}
        for argument, query, _check in _LIST_VALUE_FILTERS:
            values = getattr(self, argument)
            if values is not None:
                params[query] = ",".join(values)
        if self.created_on_or_after is not None:
            params["createdOnOrAfter"] = format_utc_ms(self.created_on_or_after)
        if self.created_before is not None:
            params["createdBefore"] = format_utc_ms(self.created_before)
        if self.sort_field is not None:
            params["sortField"] = self.sort_field
        if self.sort_direction is not None:
            params["sortDirection"] = self.sort_direction
        return params

    def params(self, *, page_number: int = 0, page_size: int = DEFAULT_LIST_PAGE_SIZE) -> dict[str, str]:
        """The query parameters of one page.

        :param page_number: Page to fetch, from 0 (``pageNumber``).
        :param page_size: Records per page, 1 to :data:`MAX_LIST_PAGE_SIZE` (``pageSize``).
        """
        return {
            "pageNumber": str(int_value("page_number", page_number, 0)),
            "pageSize": str(int_value("page_size", page_size, 1, MAX_LIST_PAGE_SIZE)),
            **self.filter_params(),
        }

    def matches(self, allocation: Allocation) -> bool:
        """Statuses, types, currencies and connections applied locally (a shared feed may deliver more)."""
        if self.statuses is not None and str(allocation.status) not in self.statuses:
            return False
        if self.types is not None and str(allocation.type) not in self.types:
            return False
        if self.currencies is not None and allocation.amount.currency not in self.currencies:
            return False
        return self.connection_ids is None or allocation.connection_id in self.connection_ids

    def describe(self) -> str:
        """The filters as a short text for logs."""
        return "&".join(f"{name}={value}" for name, value in self.filter_params().items())


def list_query_params(
    *, page_number: int = 0, page_size: int = DEFAULT_LIST_PAGE_SIZE, **filters: Unpack[ListFilters]
) -> dict[str, str]:
    """Validate the list endpoint's filters and return the query parameters of one page.

    The filters are those of :class:`ListQuery`; ``page_number`` from 0, ``page_size`` 1 to
    :data:`MAX_LIST_PAGE_SIZE`.

    :raises OESInvalidRequestError: naming the parameter and the bad value, before any request is sent.
    :raises TypeError: for a filter name that is not one of :class:`ListFilters` (as for a misspelt keyword).
    """
    query = ListQuery.of(**filters)
    return query.params(page_number=page_number, page_size=page_size)
