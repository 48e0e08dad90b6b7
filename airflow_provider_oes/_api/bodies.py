"""Answers of the API: size limits, JSON bodies, allocation records (validated, the asked id checked, no token echo)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from airflow_provider_oes._api.paths import shown
from airflow_provider_oes.exceptions import OESResponseError
from airflow_provider_oes.models import Allocation

MAX_RESPONSE_BYTES = 1 << 20
"""Bodies larger than this are refused (an allocation is about 1 kB; a list page of 1,000 about 1 MB)."""
MAX_LIST_RESPONSE_BYTES = 16 << 20


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


def load_json(body: bytes, limit: int, what: str, *, exact: bool = False) -> Any:
    """Parse an answer's JSON body, mapping what cannot be used to :class:`OESResponseError`.

    :param body: The body, as read.
    :param limit: The largest body accepted, in bytes.
    :param what: What was asked for, for the message.
    :param exact: Read JSON numbers with a fraction as :class:`~decimal.Decimal` (exact), not float: the
        settlement routes' ``usdValue`` may come as a number. Off for allocations, whose unknown fields are
        kept as parsed and go on to XCom and events as plain JSON.
    :raises OESResponseError: for a body over ``limit`` bytes, not JSON, or nested too deeply.
    """
    if len(body) > limit:
        raise OESResponseError(f"the OES API's answer for {what} is {len(body)} bytes, over the {limit}-byte limit")
    try:
        return json.loads(body, parse_float=Decimal if exact else None)
    except RecursionError:
        raise OESResponseError(f"the OES API's answer for {what} is nested too deeply") from None
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


def reject_secret_echo(
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
    data = load_json(body, MAX_RESPONSE_BYTES, what)
    reject_secret_echo(body, data, secret, what=what, enterprise_id=enterprise_id, allocation_id=allocation_id)
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
    data = load_json(body, MAX_LIST_RESPONSE_BYTES, what)
    reject_secret_echo(body, data, secret, what=what, enterprise_id=enterprise_id, allocation_id=None)
    if not isinstance(data, dict) or not isinstance(data.get("allocations"), list):
        raise OESResponseError(
            f"the OES API's answer for {what} has no 'allocations' list", enterprise_id=enterprise_id
        )
    return list(data["allocations"])


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
            f"record {position} (id {shown(record_id)}) of the allocations list of enterprise {enterprise_id!r} "
            f"is not a valid allocation ({problems})",
            enterprise_id=enterprise_id,
        ) from None
