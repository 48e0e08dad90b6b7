"""The OES API's wire rules in one place, shared by the sync hook and the async client.

:mod:`.paths` (ids, paths, base URL, enterprise header), :mod:`.query` (the one :class:`ListQuery`) and
:mod:`.bodies` (size limits, parsing answers into :class:`~airflow_provider_oes.models.Allocation`).
"""

from __future__ import annotations

from airflow_provider_oes._api.bodies import (
    MAX_LIST_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES,
    check_declared_length,
    parse_allocation_body,
    parse_allocation_record,
    parse_allocations_list_body,
    parse_listed_allocation,
)
from airflow_provider_oes._api.paths import (
    DEFAULT_BASE_URL,
    ENTERPRISE_ID_HEADER,
    USER_AGENT,
    allocation_path,
    allocations_path,
    enterprise_id_header_value,
    normalize_base_url,
    validate_allocation_id,
    validate_enterprise_id,
)
from airflow_provider_oes._api.query import (
    LIST_FILTER_NAMES,
    LIST_FILTER_QUERY_NAMES,
    LIST_SORT_DIRECTIONS,
    LIST_SORT_FIELDS,
    LIST_UNUSABLE_STATUS_CODES,
    MAX_LIST_PAGE_SIZE,
    ListFilters,
    ListQuery,
    list_query_params,
)
from airflow_provider_oes._constants import DEFAULT_LIST_PAGE_SIZE

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIST_PAGE_SIZE",
    "ENTERPRISE_ID_HEADER",
    "LIST_FILTER_NAMES",
    "LIST_FILTER_QUERY_NAMES",
    "LIST_SORT_DIRECTIONS",
    "LIST_SORT_FIELDS",
    "LIST_UNUSABLE_STATUS_CODES",
    "MAX_LIST_PAGE_SIZE",
    "MAX_LIST_RESPONSE_BYTES",
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "ListFilters",
    "ListQuery",
    "allocation_path",
    "allocations_path",
    "check_declared_length",
    "enterprise_id_header_value",
    "list_query_params",
    "normalize_base_url",
    "parse_allocation_body",
    "parse_allocation_record",
    "parse_allocations_list_body",
    "parse_listed_allocation",
    "validate_allocation_id",
    "validate_enterprise_id",
]
