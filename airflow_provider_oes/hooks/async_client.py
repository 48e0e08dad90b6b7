"""Async client of the OES API for triggers: one pooled ``httpx.AsyncClient`` per connection and event loop.

The sync hook's rules, imported rather than re-written (:mod:`airflow_provider_oes._api`,
:mod:`airflow_provider_oes._request`, :class:`airflow_provider_oes._retry.RetryPolicy`), over an async
transport, with an optional rate limiter (:class:`~airflow_provider_oes._rate_limit.RequestGate`) that every
attempt waits for. Shared per connection and loop by :mod:`airflow_provider_oes.triggers._shared.connections`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from airflow_provider_oes._api import (
    DEFAULT_LIST_PAGE_SIZE,
    USER_AGENT,
    ListFilters,
    ListQuery,
    check_declared_length,
    validate_allocation_id,
    validate_enterprise_id,
)
from airflow_provider_oes._errors import ca_bundle_error
from airflow_provider_oes._metrics import Batch
from airflow_provider_oes._request import allocation_call, list_call, redacting
from airflow_provider_oes._time import parse_http_date
from airflow_provider_oes.exceptions import OESInvalidRequestError, OESRateLimitError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Collection, Mapping

    import httpx
    from typing_extensions import Unpack

    from airflow_provider_oes._rate_limit import RequestGate
    from airflow_provider_oes._request import ApiCall
    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes._settlement_api import ListRoute
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.settlement_models import SettlementDetails

T = TypeVar("T")

DEFAULT_MAX_CONNECTIONS = 10
"""Open TCP connections per client: enough for a few concurrent requests, few enough to be polite."""


class ListPage(NamedTuple):
    """One page of the list endpoint: its raw records and the server's clock when it answered."""

    records: list[Any]
    """The records, unparsed (validate each with :func:`~airflow_provider_oes._api.parse_allocation_record`)."""
    server_time: float | None
    """The answer's ``Date`` header as epoch seconds (whole seconds), ``None`` when the server sent none."""


class OESAsyncClient:
    """Async access to the OES allocation and settlement endpoints with one connection pool.

    :param settings: The connection's settings (base URL, token, timeouts, retries).
    :param gate: Optional rate limiter every HTTP attempt waits for; a 429 penalizes it.
    :param max_connections: Size of the connection pool.
    :param transport: An httpx transport to send through instead of the network (tests use
        ``httpx.MockTransport``); TLS settings then do not apply.
    """

    def __init__(
        self,
        settings: OESConnectionSettings,
        *,
        gate: RequestGate | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import ssl

        import httpx

        self.settings = settings
        self.gate = gate
        self.retry_policy = settings.retry_policy
        try:
            # An SSLContext, not the path: httpx deprecates verify=<str>.
            verify = ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
            proxy = settings.proxy
            self._http = httpx.AsyncClient(
                base_url=settings.base_url,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                verify=verify,
                # The proxy comes from one rule shared with the sync hook (_proxy.select_proxy), not from
                # httpx's own reading of the environment (proxies, NO_PROXY, SSL_CERT_FILE, .netrc).
                trust_env=False,
                # A test's transport replaces the network: a proxy mount would bypass it.
                proxy=None if proxy is None or transport is not None else _httpx_proxy(proxy.url, verify),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
                transport=transport,
            )
        except OSError as exc:  # httpx loads the CA bundle here: a bad path must be an error event, not a crash
            if settings.ca_bundle:
                raise ca_bundle_error(settings.ca_bundle, exc) from None
            raise
        self.requests_sent = 0
        """HTTP attempts made by this client (retries included); read by tests and the benchmark."""
        self.metrics = Batch()
        """The request metrics of this client, gathered until its pollers flush them once per poll interval."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.settings.conn_id!r}, base_url={self.settings.base_url!r})"

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._http.is_closed

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get_allocation(self, allocation_id: str, enterprise_id: str) -> Allocation:
        """Fetch one allocation with the single GET, retrying transient failures.

        :param allocation_id: The allocation's UUID.
        :param enterprise_id: The client's enterprise id.
        :raises OESError: a subclass saying what went wrong.
        """
        allocation, _ = await self.get_allocation_at(allocation_id, enterprise_id)
        return allocation

    async def get_allocation_at(self, allocation_id: str, enterprise_id: str) -> tuple[Allocation, float | None]:
        """Like :meth:`get_allocation`, with the server's clock of the answer (its ``Date``, epoch s, if sent).

        :param allocation_id: The allocation's UUID.
        :param enterprise_id: The client's enterprise id.
        :raises OESError: a subclass saying what went wrong.
        """
        call = allocation_call(
            self.settings, validate_allocation_id(allocation_id), validate_enterprise_id(enterprise_id)
        )
        return await self._call(call)

    async def list_allocations(
        self,
        enterprise_id: str,
        *,
        page_number: int = 0,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
        **filters: Unpack[ListFilters],
    ) -> list[Any]:
        """Fetch one page of the list endpoint; return its raw records (:meth:`list_allocations_page` without the date).

        Records are returned unparsed so that the caller validates each one separately
        (:func:`~airflow_provider_oes._api.parse_allocation_record`): one bad record must not hide the others.

        :param enterprise_id: The client's enterprise id.
        :param page_number: Page to fetch, from 0.
        :param page_size: Records per page.
        :param filters: Any of :class:`~airflow_provider_oes._api.ListFilters`, validated by
            :func:`~airflow_provider_oes._api.list_query_params`, the same as for :meth:`OESHook.list_allocations
            <airflow_provider_oes.hooks.oes.OESHook.list_allocations>`.
        :raises OESInvalidRequestError: for a bad filter, naming it, before any request.
        :raises OESError: a subclass saying what went wrong with the request as a whole.
        """
        page = await self.list_allocations_page(enterprise_id, page_number=page_number, page_size=page_size, **filters)
        return page.records

    async def list_allocations_page(
        self,
        enterprise_id: str,
        *,
        query: ListQuery | None = None,
        page_number: int = 0,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
        kind: str = "list",
        **named: Unpack[ListFilters],
    ) -> ListPage:
        """Fetch one page of the list endpoint with any of its filters; return its raw records and server time.

        :param enterprise_id: The client's enterprise id.
        :param query: The filters as a :class:`~airflow_provider_oes._api.ListQuery` (the change feed's way).
        :param page_number: Page to fetch, from 0.
        :param page_size: Records per page.
        :param kind: What the list is read for, in the metrics: ``list``, ``id_batch`` or ``feed_page``.
        :param named: Or the filters by argument name (:class:`~airflow_provider_oes._api.ListFilters`).
        :raises OESInvalidRequestError: for a bad filter, naming it, before any request.
        :raises OESError: a subclass saying what went wrong with the request as a whole.
        """
        enterprise_id = validate_enterprise_id(enterprise_id)
        if query is not None and named:
            raise OESInvalidRequestError(f"list filter(s) {', '.join(sorted(named))} given both by name and in query")
        params = (query or ListQuery.of(**named)).params(page_number=page_number, page_size=page_size)
        records, server_time = await self._call(list_call(self.settings, enterprise_id, params, kind=kind))
        return ListPage(records, server_time)

    # --- Settlements: the same request path (_call), the settlement routes' calls -----------------------------

    async def get_settlement(
        self, settlement_id: str, enterprise_id: str, *, page_size: int = DEFAULT_LIST_PAGE_SIZE
    ) -> SettlementDetails:
        """Fetch one settlement with all its transfers and disputes, as :meth:`OESHook.get_settlement
        <airflow_provider_oes.hooks.oes.OESHook.get_settlement>` does (the same reading, page by page).

        :param settlement_id: The settlement's UUID.
        :param enterprise_id: The client's enterprise id.
        :param page_size: Transfers per request.
        :raises OESError: a subclass saying what went wrong (404: unknown, or the client is not a party to it).
        """
        from airflow_provider_oes._settlement_api import SettlementReading, validate_settlement_id

        reading = SettlementReading(
            self.settings,
            validate_enterprise_id(enterprise_id),
            validate_settlement_id(settlement_id),
            {},
            page_size,
        )
        while (call := reading.next_call()) is not None:
            reading.add((await self._call(call))[0])
        assert reading.result is not None  # next_call() returns None only then
        return reading.result

    async def list_settlements_page(
        self,
        enterprise_id: str,
        *,
        settlement_ids: Collection[str],
        page_number: int = 0,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> list[Any]:
        """One page of ``GET .../clients/settlements`` for these settlements; the raw records (validate each
        with :func:`~airflow_provider_oes._settlement_api.parse_record`: one bad record must not hide the others).

        :param enterprise_id: The client's enterprise id.
        :param settlement_ids: The settlements asked about (``settlementIds``, the key repeated).
        :param page_number: Page to fetch, from 0.
        :param page_size: Records per page.
        :raises OESError: a subclass saying what went wrong with the request as a whole.
        """
        from airflow_provider_oes._settlement_api import SETTLEMENTS
        from airflow_provider_oes._settlement_query import query_params

        enterprise_id = validate_enterprise_id(enterprise_id)
        filters = {"settlement_ids": sorted(settlement_ids)}
        params = query_params(SETTLEMENTS.filters, filters, page_number=page_number, page_size=page_size)
        records, _ = await self._call(SETTLEMENTS.call(self.settings, enterprise_id, params))
        return records

    async def list_route_page(
        self,
        route: ListRoute,
        enterprise_id: str,
        filters: Mapping[str, object],
        *,
        page_number: int = 0,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> ListPage:
        """One page of a settlement-area list route (the settlement watcher's reads), with the server's clock.

        :param route: The route (``_settlement_api.TRANSFERS``, ``SETTLEMENTS``, ``PARTNERS``...).
        :param enterprise_id: The client's enterprise id.
        :param filters: The route's filters by argument name (checked, naming a bad value).
        :param page_number: Page to fetch, from 0.
        :param page_size: Records per page.
        """
        from airflow_provider_oes._settlement_query import query_params

        enterprise_id = validate_enterprise_id(enterprise_id)
        params = query_params(route.filters, filters, page_number=page_number, page_size=page_size)
        records, server_time = await self._call(route.call(self.settings, enterprise_id, params))
        return ListPage(records, server_time)

    async def _call(self, call: ApiCall[T]) -> tuple[T, float | None]:
        """The call with its retries, and the server's clock (``Date``, epoch s) of the answer that succeeded;
        the token is stripped from any error."""
        call.batch = self.metrics
        with redacting(self.settings.token):
            return await self.retry_policy.acall(lambda: self._attempt(call))

    async def _attempt(self, call: ApiCall[T]) -> tuple[T, float | None]:
        """One attempt: the steps of :mod:`airflow_provider_oes._request` around the rate limiter and httpx I/O.

        Returns the result and the answer's ``Date`` (epoch s; ``None`` without one): the change feed and its
        id checks reason in the server's time, never in this machine's.
        """
        import httpx

        call.check_token()
        ticket = await self.gate.acquire() if self.gate is not None else None
        self.requests_sent += 1
        started = call.attempt_started()
        try:
            async with self._http.stream(
                "GET",
                call.path,
                params=call.params,
                headers={"Authorization": f"Bearer {self.settings.token}", **call.headers},
            ) as response:
                body = await _read_limited(response, call.limit, call.what, self.settings.read_timeout)
        except httpx.HTTPError as exc:
            call.attempt_ended(None, started)
            raise call.transport_error(exc, timed_out=isinstance(exc, httpx.TimeoutException)) from None
        finally:
            if self.gate is not None:
                # The request is over: the limiter's window for it starts now, not when it was sent.
                self.gate.release(ticket)
        call.attempt_ended(response.status_code, started)
        try:
            return (
                call.answer(response.status_code, body, response.headers.get("Retry-After")),
                parse_http_date(response.headers.get("date")),
            )
        except OESRateLimitError as error:
            if self.gate is not None:
                # Hold back every trigger on this connection, not only this call's retry; the ticket tells
                # the limiter whether this 429 starts a new congestion episode (see _rate_limit).
                self.gate.penalize(self.retry_policy.wait_seconds(1, error), ticket)
            raise


def _httpx_proxy(url: str, verify: ssl.SSLContext | bool) -> httpx.Proxy:
    """The httpx proxy for ``url``; an https proxy's certificate is checked with the API's trust, as requests does."""
    import httpx

    if url.lower().startswith("https://") and not isinstance(verify, bool):
        return httpx.Proxy(url, ssl_context=verify)
    return httpx.Proxy(url)


async def _read_limited(response: httpx.Response, limit: int, what: str, timeout: float) -> bytes:
    """Read at most ``limit + 1`` bytes within ``timeout`` seconds.

    The size cap stops an endless body from exhausting memory; the time cap stops a body that drips in,
    each byte within httpx's per-read timeout, from blocking the shared poller for hours.
    """
    import asyncio

    import httpx

    try:
        return await asyncio.wait_for(_read_capped(response, limit, what), timeout)
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout("the body did not arrive within the read timeout") from None


async def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    check_declared_length(response.headers.get("Content-Length"), limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)
