"""The OES API's wire rules in one place, shared by the sync hook and the async trigger client.

Endpoint paths, local validation of ids, URL building, and turning a response body into an
:class:`~airflow_provider_oes.models.Allocation` all live here, so the sensor, the operator and the
trigger never re-implement them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import quote, urlsplit

from pydantic import ValidationError

from airflow_provider_oes import __version__
from airflow_provider_oes._constants import DEFAULT_LIST_PAGE_SIZE, PRODUCTION_BASE_URL, TEST_BASE_URL
from airflow_provider_oes.exceptions import OESInvalidRequestError, OESResponseError
from airflow_provider_oes.models import Allocation

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from typing_extensions import Unpack

DEFAULT_BASE_URL = PRODUCTION_BASE_URL
"""A connection with an empty Host talks to BitGo's production API."""

USER_AGENT = f"airflow-provider-oes/{__version__}"
"""Sent with every request, so BitGo can tell this provider's traffic apart."""

MAX_RESPONSE_BYTES = 1 << 20
"""Bodies larger than this are refused (an allocation is about 1 kB; a list page of 1,000 about 1 MB)."""
MAX_LIST_RESPONSE_BYTES = 16 << 20

_ENTERPRISES_PREFIX = "/api/network/v1/enterprises"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_ENTERPRISE_ID_LENGTH = 128
_MAX_SHOWN = 80


def _shown(value: object) -> str:
    """repr() of a bad value, cut short so a 10 kB id does not flood the log."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(str(value))} characters)"


def validate_allocation_id(allocation_id: object) -> str:
    """Return the allocation id if it is a UUID in its canonical 8-4-4-4-12 hex form.

    :raises OESInvalidRequestError: naming the value, before any request is sent.
    """
    if not isinstance(allocation_id, str) or not _UUID.fullmatch(allocation_id):
        raise OESInvalidRequestError(
            f"allocation_id must be a UUID like 'a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab', got {_shown(allocation_id)}",
            allocation_id=None,
        )
    return allocation_id


def validate_enterprise_id(enterprise_id: object) -> str:
    """Return the enterprise id if it can be sent as one path segment.

    Rejected: non-strings, empty, ``.`` and ``..`` (HTTP clients collapse them out of the path),
    whitespace and control characters, and anything over 128 characters. Everything else is
    percent-encoded by :func:`allocation_path`.

    :raises OESInvalidRequestError: naming the value, before any request is sent.
    """
    problem = None
    if not isinstance(enterprise_id, str):
        problem = "must be a string"
    elif not enterprise_id:
        problem = "must not be empty"
    elif enterprise_id in {".", ".."}:
        problem = "must not be '.' or '..'"
    elif len(enterprise_id) > _MAX_ENTERPRISE_ID_LENGTH:
        problem = f"must be at most {_MAX_ENTERPRISE_ID_LENGTH} characters"
    elif any(ch.isspace() or not ch.isprintable() for ch in enterprise_id):
        problem = "must not contain whitespace or control characters"
    if problem:
        raise OESInvalidRequestError(f"enterprise_id {problem}, got {_shown(enterprise_id)}")
    assert isinstance(enterprise_id, str)
    return enterprise_id


def _segment(value: str) -> str:
    return quote(value, safe="")


def allocations_path(enterprise_id: str) -> str:
    """Path of the list endpoint for an (already validated) enterprise id."""
    return f"{_ENTERPRISES_PREFIX}/{_segment(enterprise_id)}/clients/allocations"


def allocation_path(enterprise_id: str, allocation_id: str) -> str:
    """Path of the single-allocation endpoint, each id one percent-encoded segment."""
    return f"{allocations_path(enterprise_id)}/{_segment(allocation_id)}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """Turn the connection's Host (and Port) fields into a base URL.

    Empty means BitGo production. A bare host name gets ``https://``. ``http://`` is accepted only for
    loopback hosts (the local simulator), so that a token is never sent in clear text over a network.

    :raises OESInvalidRequestError: for a URL that is not https (or loopback http), or has no host.
    """
    if host is None or not host.strip():
        return DEFAULT_BASE_URL
    raw = host.strip()
    if "://" not in raw:
        raw = f"https://{raw}"
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
    except ValueError:  # e.g. an unbalanced "[" of an IPv6 literal
        hostname = None
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        hostname = None
    if not hostname or parts.scheme not in {"https", "http"}:
        raise OESInvalidRequestError(
            f"the connection's host must be a URL like {PRODUCTION_BASE_URL!r} or {TEST_BASE_URL!r}, got {_shown(host)}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise OESInvalidRequestError(
            "the connection's host must not carry credentials, a query or a fragment; "
            f"put only the scheme, host and port there, got a URL for host {parts.hostname!r}"
        )
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise OESInvalidRequestError(
            f"the connection's host {_shown(host)} uses plain http: the access token would travel "
            "unencrypted. Use https:// (http:// is allowed only for 127.0.0.1/localhost)."
        )
    netloc = parts.netloc
    try:
        has_port = parts.port is not None
    except ValueError:
        raise OESInvalidRequestError(f"the connection's host has a bad port: {_shown(host)}") from None
    if port and not has_port:
        netloc = f"{netloc}:{int(port)}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def check_declared_length(declared: str | None, limit: int, what: str) -> None:
    """Refuse an answer whose ``Content-Length`` is over ``limit`` before reading any of it.

    :param declared: The raw ``Content-Length`` header, if any.
    :param limit: The largest body accepted, in bytes.
    :param what: What was asked for, for the message.
    :raises OESResponseError: when the declared length is over the limit.
    """
    if declared and declared.isdigit() and int(declared) > limit:
        raise OESResponseError(
            f"the OES API's answer for {what} declares {declared} bytes, over the {limit}-byte limit"
        )


def _load_json(body: bytes, limit: int, what: str) -> Any:
    if len(body) > limit:
        raise OESResponseError(f"the OES API's answer for {what} is {len(body)} bytes, over the {limit}-byte limit")
    try:
        return json.loads(body)
    except RecursionError:
        raise OESResponseError(f"the OES API's answer for {what} is nested too deeply to be an allocation") from None
    except ValueError:
        snippet = body[:60].decode("utf-8", "replace")
        raise OESResponseError(f"the OES API's answer for {what} is not JSON (starts with {snippet!r})") from None


def parse_allocation_record(record: Any, *, allocation_id: str, enterprise_id: str) -> Allocation:
    """Validate one allocation record and check it is the allocation that was asked for.

    :raises OESResponseError: if the record is not a valid allocation or has another id.
    """
    what = f"allocation {allocation_id!r} of enterprise {enterprise_id!r}"
    try:
        allocation = Allocation.model_validate(record)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise OESResponseError(
            f"the OES API's answer for {what} is not a valid allocation ({problems})",
            allocation_id=allocation_id,
            enterprise_id=enterprise_id,
        ) from None
    if allocation.id.lower() != allocation_id.lower():
        raise OESResponseError(
            f"the OES API answered with allocation {allocation.id!r} when asked for {what}; refusing to use it",
            allocation_id=allocation_id,
            enterprise_id=enterprise_id,
        )
    return allocation


def _contains_secret(value: Any, secret: str) -> bool:
    if isinstance(value, str):
        return secret in value
    if isinstance(value, dict):
        return any(_contains_secret(k, secret) or _contains_secret(v, secret) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_contains_secret(v, secret) for v in value)
    return False


def _reject_secret_echo(
    body: bytes, data: Any, secret: str | None, *, what: str, enterprise_id: str, allocation_id: str | None
) -> None:
    """Refuse an answer in which the access token appears (a server echoing the Authorization header).

    Its strings would travel on into logs (an unknown status is logged), XCom and error messages. A string
    of the parsed JSON either stands in the raw body as it is, or the body uses a backslash escape; so the
    cheap byte search decides, and the walk over the parsed data runs only for bodies with escapes.
    """
    if not secret:
        return
    if secret.encode() in body or (b"\\" in body and _contains_secret(data, secret)):
        raise OESResponseError(
            f"the OES API's answer for {what} contains this connection's access token; refusing to use or show it",
            allocation_id=allocation_id,
            enterprise_id=enterprise_id,
        )


def parse_allocation_body(
    body: bytes, *, allocation_id: str, enterprise_id: str, secret: str | None = None
) -> Allocation:
    """Parse a 2xx body of the single-allocation endpoint (``{"allocation": {...}}``).

    :param secret: The connection's access token: an answer that contains it is refused.
    :raises OESResponseError: for a body that is too large, not JSON, not an allocation, another one, or one
        that echoes the token.
    """
    what = f"allocation {allocation_id!r} of enterprise {enterprise_id!r}"
    data = _load_json(body, MAX_RESPONSE_BYTES, what)
    _reject_secret_echo(body, data, secret, what=what, enterprise_id=enterprise_id, allocation_id=allocation_id)
    if not isinstance(data, dict) or not isinstance(data.get("allocation"), dict):
        raise OESResponseError(
            f"the OES API's answer for {what} has no 'allocation' object",
            allocation_id=allocation_id,
            enterprise_id=enterprise_id,
        )
    return parse_allocation_record(data["allocation"], allocation_id=allocation_id, enterprise_id=enterprise_id)


def parse_allocations_list_body(body: bytes, *, enterprise_id: str, secret: str | None = None) -> list[Any]:
    """Return the raw records of a 2xx list-endpoint body (``{"allocations": [...]}``).

    Each record is validated separately with :func:`parse_allocation_record`, so one bad record does not
    hide the others.

    :param secret: The connection's access token: an answer that contains it is refused.
    :raises OESResponseError: for a body that is too large, not JSON, has no ``allocations`` list, or echoes
        the token.
    """
    what = f"the allocations list of enterprise {enterprise_id!r}"
    data = _load_json(body, MAX_LIST_RESPONSE_BYTES, what)
    _reject_secret_echo(body, data, secret, what=what, enterprise_id=enterprise_id, allocation_id=None)
    if not isinstance(data, dict) or not isinstance(data.get("allocations"), list):
        raise OESResponseError(
            f"the OES API's answer for {what} has no 'allocations' list", enterprise_id=enterprise_id
        )
    return list(data["allocations"])


def parse_http_date(value: str | None) -> float | None:
    """The server's clock from an HTTP ``Date`` header, as epoch seconds; ``None`` when absent or unreadable.

    The header has whole-second resolution: it reads up to 1 s behind the server's clock, which only ever
    makes a window built from it reach further back (the safe side).
    """
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; a bare one is taken as UTC too
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_timestamp(value: object) -> float | None:
    """An ISO 8601 timestamp of the API (``createdAt``/``updatedAt``) as epoch seconds; ``None`` if unreadable.

    Cheap on purpose (no model validation): the change feed reads the ``updatedAt`` of every row it pages
    through, most of which it has already seen. A timestamp without an offset is taken as UTC.
    """
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def format_timestamp(epoch: float) -> str:
    """Epoch seconds as the API's ISO 8601 form in UTC with milliseconds (``2026-11-25T18:30:00.123Z``)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- The list endpoint's query: every filter, validated and encoded in one place -------------------------

ENTERPRISE_ID_HEADER = "enterprise-id"
"""Header naming the enterprise on every request, besides the path, as BitGo's own SDK sends it."""


def enterprise_id_header_value(enterprise_id: str) -> str:
    """The ``enterprise-id`` header's value for an (already validated) enterprise id.

    The id itself; one outside ASCII (no real enterprise id is) goes percent-encoded as UTF-8, as in the
    path, because HTTP clients cannot send it raw (httpx encodes header text as ASCII).
    """
    return enterprise_id if enterprise_id.isascii() else _segment(enterprise_id)


LIST_STATUSES = ("cleared", "released", "reserved")
"""Values the list endpoint's ``statuses`` filter accepts."""
LIST_TYPES = ("allocation", "deallocation")
"""Values the list endpoint's ``types`` filter accepts."""
LIST_SORT_FIELDS = ("id", "updatedAt", "quantity", "currency")
"""Values of ``sortField``. Whatever it is, the API then orders by ``createdAt`` and ``id`` ascending."""
LIST_SORT_DIRECTIONS = ("ASC", "DESC")
"""Values of ``sortDirection`` (the API's default is ``ASC``)."""
MAX_LIST_PAGE_SIZE = 1000
"""The largest page this package asks for: a page of 1,000 allocations is about 1 MB."""

_CURRENCY = re.compile(r"[A-Za-z0-9:_.\-]{1,64}")


def _csv_values(name: str, values: object, check: Callable[[str, object], str]) -> str | None:
    """Join a filter's values with commas, each checked; ``None`` (no filter) stays ``None``."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise OESInvalidRequestError(f"{name} must be a list of values (or None for no filter), got {_shown(values)}")
    if not values:
        # An empty parameter could be read as "no filter" and return everything: the opposite of what was asked.
        raise OESInvalidRequestError(f"{name} must not be empty: pass None for no filter")
    checked = [check(name, value) for value in values]
    # A set has no order: sort it so that the same filter always makes the same URL.
    return ",".join(sorted(checked) if isinstance(values, (set, frozenset)) else checked)


def _uuid_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise OESInvalidRequestError(f"{name} must hold UUIDs, got {_shown(value)}")
    return value


def _enum_value(allowed: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        # A str-based Enum (AllocationStatus.CLEARED) counts as its value.
        raw = value.value if isinstance(value, Enum) else value
        if not isinstance(raw, str) or raw not in allowed:
            raise OESInvalidRequestError(f"{name} values must be one of {', '.join(allowed)}; got {_shown(value)}")
        return raw

    return check


def _currency_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise OESInvalidRequestError(
            f"{name} must hold currency codes (letters, digits, ':', '_', '.', '-'), got {_shown(value)}"
        )
    return value


def _timestamp_value(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    moment = value
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise OESInvalidRequestError(
            f"{name} must be a datetime or an ISO 8601 string like '2026-11-24T00:00:00Z', got {_shown(value)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time would be read in whatever zone the worker runs in: a silent shift of the window.
        raise OESInvalidRequestError(f"{name} must carry a time zone (e.g. UTC), got {_shown(value)}")
    return moment.astimezone(timezone.utc)


def _format_utc(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int_value(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise OESInvalidRequestError(f"{name} must be an integer {bound}, got {_shown(value)}")
    return value


class ListFilters(TypedDict, total=False):
    """The list endpoint's filters by argument name: the one definition of the set.

    :meth:`OESHook.list_allocations <airflow_provider_oes.hooks.oes.OESHook.list_allocations>` and
    :class:`~airflow_provider_oes.operators.allocation.ListAllocationsOperator` spell them out as keyword
    arguments for DAG authors (a test checks they match this set); the async client takes them as
    ``**filters``. Values are kept as given and checked only by :func:`list_query_params`, which documents
    each one: an operator's templated filters are rendered after the operator is built.
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
    ("allocation_ids", "allocationIds", _uuid_value),
    ("statuses", "statuses", _enum_value(LIST_STATUSES)),
    ("types", "types", _enum_value(LIST_TYPES)),
    ("currencies", "currencies", _currency_value),
    ("connection_ids", "connectionIds", _uuid_value),
    ("partner_ids", "partnerIds", _uuid_value),
)
"""The comma-separated list filters: argument name, query-parameter name, and the check of each value."""

LIST_FILTER_QUERY_NAMES: dict[str, str] = {argument: query for argument, query, _ in _LIST_VALUE_FILTERS}
"""The query-parameter name of each comma-separated list filter, by argument name."""


def list_query_params(
    *, page_number: int = 0, page_size: int = DEFAULT_LIST_PAGE_SIZE, **filters: Unpack[ListFilters]
) -> dict[str, str]:
    """Validate the list endpoint's filters and return its query parameters (used by the hook and async client).

    Every filter is optional; ``None`` means "no filter". A list filter must hold at least one value.

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
    :param page_number: Page to fetch, from 0 (``pageNumber``).
    :param page_size: Records per page, 1 to :data:`MAX_LIST_PAGE_SIZE` (``pageSize``).
    :raises OESInvalidRequestError: naming the parameter and the bad value, before any request is sent.
    :raises TypeError: for a filter name that is not one of :class:`ListFilters` (as for a misspelt keyword).
    """
    unknown = sorted(set(filters) - set(LIST_FILTER_NAMES))
    if unknown:
        raise TypeError(
            f"list_query_params() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"the list filters are {', '.join(LIST_FILTER_NAMES)}"
        )
    params: dict[str, str] = {
        "pageNumber": str(_int_value("page_number", page_number, 0)),
        "pageSize": str(_int_value("page_size", page_size, 1, MAX_LIST_PAGE_SIZE)),
    }
    for argument, query, check in _LIST_VALUE_FILTERS:
        values = _csv_values(argument, filters.get(argument), check)
        if values is not None:
            params[query] = values
    after = _timestamp_value("created_on_or_after", filters.get("created_on_or_after"))
    before = _timestamp_value("created_before", filters.get("created_before"))
    if after is not None and before is not None and after > before:
        raise OESInvalidRequestError(
            f"created_on_or_after ({_format_utc(after)}) must not be later than created_before ({_format_utc(before)})"
        )
    if after is not None:
        params["createdOnOrAfter"] = _format_utc(after)
    if before is not None:
        params["createdBefore"] = _format_utc(before)
    sort_field = filters.get("sort_field")
    if sort_field is not None:
        params["sortField"] = _enum_value(LIST_SORT_FIELDS)("sort_field", sort_field)
    sort_direction = filters.get("sort_direction")
    if sort_direction is not None:
        params["sortDirection"] = _enum_value(LIST_SORT_DIRECTIONS)("sort_direction", sort_direction)
    return params


def list_filters_by_query_name(
    filters: Mapping[str, Collection[str]], accepted: Collection[str] = tuple(LIST_FILTER_QUERY_NAMES.values())
) -> ListFilters:
    """Turn list filters keyed by their query-parameter name (``connectionIds``) into :class:`ListFilters`.

    :param filters: Values by query-parameter name.
    :param accepted: The query-parameter names a caller may use this way.
    :raises OESInvalidRequestError: for a name not in ``accepted``, naming it.
    """
    arguments = {query: argument for argument, query in LIST_FILTER_QUERY_NAMES.items() if query in accepted}
    named: dict[str, Collection[str]] = {}
    for name, values in filters.items():
        if name not in arguments:
            raise OESInvalidRequestError(
                f"unknown list filter {name!r}; expected one of {', '.join(sorted(arguments))}"
            )
        named[arguments[name]] = values
    return cast("ListFilters", named)


def parse_listed_allocation(record: Any, *, enterprise_id: str, position: int) -> Allocation:
    """Validate one record of a list page (no id was asked for, so none is compared).

    :param position: The record's index in the listing, named in the error.
    :raises OESResponseError: if the record is not a valid allocation.
    """
    try:
        return Allocation.model_validate(record)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()[:5]
        )
        record_id = record.get("id") if isinstance(record, dict) else None
        raise OESResponseError(
            f"record {position} (id {_shown(record_id)}) of the allocations list of enterprise {enterprise_id!r} "
            f"is not a valid allocation ({problems})",
            enterprise_id=enterprise_id,
        ) from None
