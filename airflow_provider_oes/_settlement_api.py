"""The settlement routes' wire rules: paths, answer parsing and the calls the hook sends (queries: ``_settlement_query``).

Built on the allocation engine (:mod:`airflow_provider_oes._api` for ids and value checks,
:mod:`airflow_provider_oes._request` for the steps of one call, :mod:`airflow_provider_oes._errors` for error
mapping), adding only what differs: these routes take array filters as repeated keys
(``statuses=pending&statuses=failed``, OpenAPI's default form style), and their bodies are read with exact
decimals (a ``usdValue`` sent as a JSON number must not pass through a float).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from airflow_provider_oes._api.bodies import MAX_LIST_RESPONSE_BYTES, load_json, reject_secret_echo
from airflow_provider_oes._api.paths import ENTERPRISES_PREFIX, segment, shown
from airflow_provider_oes._api.query import (
    uuid_value,
)
from airflow_provider_oes._request import ApiCall
from airflow_provider_oes._settlement_query import (
    DISPUTE_FILTERS,
    PARTNER_FILTERS,
    SETTLEMENT_DETAIL_FILTERS,
    SETTLEMENT_FILTERS,
    TRANSFER_FILTERS,
    Params,
    query_params,
)
from airflow_provider_oes.exceptions import OESInvalidRequestError, OESResponseError
from airflow_provider_oes.settlement_models import (
    Dispute,
    ListedSettlement,
    Partner,
    SettlementDetails,
    SettlementTransfer,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_oes._settings import OESConnectionSettings

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

KIND_SINGLE = "settlement_single"
"""The metrics' request kind of the GET of one settlement (``oes.requests.settlement_single.<outcome>``)."""
KIND_PAGE = "settlement_page"
"""The metrics' request kind of a page of a settlement-area list (settlements, transfers, disputes, partners)."""


def validate_settlement_id(settlement_id: object) -> str:
    """Return the settlement id if it is a UUID in its canonical form.

    :raises OESInvalidRequestError: naming the value, before any request is sent.
    """
    try:
        return uuid_value("settlement_id", settlement_id)
    except OESInvalidRequestError:
        raise OESInvalidRequestError(
            f"settlement_id must be a UUID like 'a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab', got {shown(settlement_id)}"
        ) from None


def _enterprise(enterprise_id: str) -> str:
    return f"{ENTERPRISES_PREFIX}/{segment(enterprise_id)}"


def settlements_path(enterprise_id: str) -> str:
    """``GET .../clients/settlements`` (the list) for an (already validated) enterprise id."""
    return f"{_enterprise(enterprise_id)}/clients/settlements"


def settlement_path(enterprise_id: str, settlement_id: str) -> str:
    """``GET .../clients/settlements/{settlementId}``, each id one percent-encoded segment."""
    return f"{settlements_path(enterprise_id)}/{segment(settlement_id)}"


def settlement_transfers_path(enterprise_id: str) -> str:
    """``GET .../clients/settlementTransfers``."""
    return f"{_enterprise(enterprise_id)}/clients/settlementTransfers"


def settlement_disputes_path(enterprise_id: str) -> str:
    """``GET .../clients/settlement/disputes`` (singular ``settlement``, as BitGo spells this read route)."""
    return f"{_enterprise(enterprise_id)}/clients/settlement/disputes"


def partners_path(enterprise_id: str) -> str:
    """``GET .../partners``."""
    return f"{_enterprise(enterprise_id)}/partners"


# --- Answers -------------------------------------------------------------------------------------------------


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5])


def _validate(model: type[M], record: Any, what: str, enterprise_id: str) -> M:
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise OESResponseError(
            f"the OES API's answer for {what} is not valid ({_problems(exc)})", enterprise_id=enterprise_id
        ) from None


def _envelope(
    body: bytes, key: str, kind: type, *, limit: int, what: str, enterprise_id: str, secret: str | None
) -> Any:
    data = load_json(body, limit, what, exact=True)
    reject_secret_echo(body, data, secret, what=what, enterprise_id=enterprise_id, allocation_id=None)
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        expected = "list" if kind is list else "object"
        raise OESResponseError(
            f"the OES API's answer for {what} has no {key!r} {expected}", enterprise_id=enterprise_id
        )
    return data


def parse_record(model: type[M], record: Any, *, what: str, enterprise_id: str, position: int) -> M:
    """Validate one record of a list page; an invalid one raises, naming its position and id (never skipped).

    :param what: The listing, as messages name it.
    :param position: The record's index in the whole listing.
    """
    record_id = record.get("id") if isinstance(record, dict) else None
    return _validate(model, record, f"record {position} (id {shown(record_id)}) of {what}", enterprise_id)


# --- Calls ---------------------------------------------------------------------------------------------------


class ResourceCall(ApiCall[T]):
    """An :class:`~airflow_provider_oes._request.ApiCall` about something other than an allocation: the same steps
    (token check, metrics, error mapping, token redaction), told its subject for messages and its request kind
    for the metrics, and taking the settlement routes' query parameters (a list value is the key repeated).

    :param subject: What is asked for, as messages name it (``settlement '...'``, ``the settlements list``).
    :param kind: The request kind in the metrics (:data:`KIND_SINGLE` or :data:`KIND_PAGE`).
    """

    __slots__ = ()

    def __init__(
        self,
        settings: OESConnectionSettings,
        path: str,
        *,
        params: Params | None,
        limit: int,
        parse: Callable[[bytes], T],
        subject: str,
        kind: str,
        enterprise_id: str,
    ) -> None:
        # requests and httpx send a list value as the key repeated; ApiCall only passes params through.
        super().__init__(
            settings,
            path,
            params=cast("dict[str, str] | None", params),
            limit=limit,
            parse=parse,
            allocation_id=None,
            enterprise_id=enterprise_id,
            kind=kind,
            subject=subject,
        )


def settlement_call(
    settings: OESConnectionSettings, enterprise_id: str, settlement_id: str, params: Params
) -> ResourceCall[tuple[SettlementDetails, int]]:
    """One page of ``GET .../clients/settlements/{settlementId}``: the parsed answer and how many transfers it held.

    :raises OESResponseError: for an invalid answer, or one about another settlement.
    """
    subject = f"settlement {settlement_id!r}"
    what = f"{subject} of enterprise {enterprise_id!r}"

    def parse(body: bytes) -> tuple[SettlementDetails, int]:
        data = _envelope(
            body,
            "settlement",
            dict,
            limit=MAX_LIST_RESPONSE_BYTES,
            what=what,
            enterprise_id=enterprise_id,
            secret=settings.token,
        )
        details = _validate(SettlementDetails, data, what, enterprise_id)
        if details.settlement.id.lower() != settlement_id.lower():
            raise OESResponseError(
                f"the OES API answered with settlement {details.settlement.id!r} when asked for {what}; "
                "refusing to use it",
                enterprise_id=enterprise_id,
            )
        return details, len(details.settlement_transfers)

    return ResourceCall(
        settings,
        settlement_path(enterprise_id, settlement_id),
        params=params,
        limit=MAX_LIST_RESPONSE_BYTES,
        parse=parse,
        subject=subject,
        kind=KIND_SINGLE,
        enterprise_id=enterprise_id,
    )


SETTLEMENT_READS = 3
"""How many times a settlement's reading starts over when the settlement changes between its transfer pages."""


class SettlementReading:
    """The transfer pages of one settlement's GET put together, from one state of it (no I/O: both clients use it).

    Ask :meth:`next_call` for the next page's call until it returns ``None``, hand each answer to :meth:`add`,
    then read :attr:`result`. Pages are read until a short one; if the settlement changes between two pages
    (another ``updatedAt`` or status) the reading starts over, at most :data:`SETTLEMENT_READS` times.

    :param filters: The GET's filters by argument name (``currencies``), checked here before any request.
    :raises OESInvalidRequestError: for a bad filter or page size.
    """

    def __init__(
        self,
        settings: OESConnectionSettings,
        enterprise_id: str,
        settlement_id: str,
        filters: Mapping[str, object],
        page_size: int,
    ) -> None:
        query_params(SETTLEMENT_DETAIL_FILTERS, filters, page_size=page_size)
        self.settings = settings
        self.enterprise_id = enterprise_id
        self.settlement_id = settlement_id
        self.filters = filters
        self.page_size = page_size
        self.reads = 0
        self.result: SettlementDetails | None = None
        self._first: SettlementDetails | None = None
        self._transfers: dict[str, SettlementTransfer] = {}
        self._page = 0

    def next_call(self) -> ResourceCall[tuple[SettlementDetails, int]] | None:
        """The next page's call; ``None`` once :attr:`result` is set.

        :raises OESResponseError: when the settlement changed during each of :data:`SETTLEMENT_READS` readings.
        """
        if self.result is not None:
            return None
        if self.reads >= SETTLEMENT_READS:
            raise OESResponseError(
                f"settlement {self.settlement_id!r} of enterprise {self.enterprise_id!r} changed while its "
                f"transfers were read, {SETTLEMENT_READS} times in a row; try again",
                enterprise_id=self.enterprise_id,
            )
        params = query_params(SETTLEMENT_DETAIL_FILTERS, self.filters, page_number=self._page, page_size=self.page_size)
        return settlement_call(self.settings, self.enterprise_id, self.settlement_id, params)

    def add(self, answer: tuple[SettlementDetails, int]) -> None:
        """One page's parsed answer (what the call of :meth:`next_call` returned)."""
        details, count = answer
        first = self._first
        if first is None:
            first = self._first = details
        elif (details.settlement.updated_at, details.settlement.status) != (
            first.settlement.updated_at,
            first.settlement.status,
        ):
            self.reads += 1
            self._first, self._transfers, self._page = None, {}, 0
            return
        new = [t for t in details.settlement_transfers if t.id not in self._transfers]
        self._transfers.update((t.id, t) for t in new)
        self._page += 1
        # A short page is the last; a page with nothing new means the route does not page (it sent all).
        if count < self.page_size or not new or count > self.page_size:
            self.result = first.model_copy(update={"settlement_transfers": list(self._transfers.values())})


@dataclass(frozen=True)
class ListRoute:
    """A settlement-area list route: its path, envelope key, record model, filters and name in messages."""

    path: Callable[[str], str]
    key: str
    model: type[BaseModel]
    filters: Mapping[str, tuple[str, Any]]
    subject: str

    def call(self, settings: OESConnectionSettings, enterprise_id: str, params: Params) -> ResourceCall[list[Any]]:
        """One page; its result is the raw records (each validated by :func:`parse_records`)."""
        what = f"{self.subject} of enterprise {enterprise_id!r}"

        def parse(body: bytes) -> list[Any]:
            data = _envelope(
                body,
                self.key,
                list,
                limit=MAX_LIST_RESPONSE_BYTES,
                what=what,
                enterprise_id=enterprise_id,
                secret=settings.token,
            )
            return list(data[self.key])

        return ResourceCall(
            settings,
            self.path(enterprise_id),
            params=params,
            limit=MAX_LIST_RESPONSE_BYTES,
            parse=parse,
            subject=self.subject,
            kind=KIND_PAGE,
            enterprise_id=enterprise_id,
        )


SETTLEMENTS = ListRoute(settlements_path, "settlements", ListedSettlement, SETTLEMENT_FILTERS, "the settlements list")
TRANSFERS = ListRoute(
    settlement_transfers_path,
    "settlementTransfers",
    SettlementTransfer,
    TRANSFER_FILTERS,
    "the settlement transfers list",
)
DISPUTES = ListRoute(settlement_disputes_path, "disputes", Dispute, DISPUTE_FILTERS, "the settlement disputes list")
PARTNERS = ListRoute(partners_path, "partners", Partner, PARTNER_FILTERS, "the partners list")

__all__ = [
    "DISPUTES",
    "KIND_PAGE",
    "KIND_SINGLE",
    "PARTNERS",
    "SETTLEMENTS",
    "SETTLEMENT_READS",
    "TRANSFERS",
    "ListRoute",
    "ResourceCall",
    "SettlementReading",
    "parse_record",
    "settlement_call",
    "validate_settlement_id",
]
