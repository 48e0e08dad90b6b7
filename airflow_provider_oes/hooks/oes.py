"""Hook for BitGo's Off-Exchange Settlement (OES) client API: allocations and settlements."""

from __future__ import annotations

import itertools
import time
import uuid
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_oes._api import (
    DEFAULT_LIST_PAGE_SIZE,
    USER_AGENT,
    ListFilters,
    ListQuery,
    check_declared_length,
    parse_listed_allocation,
    validate_allocation_id,
    validate_enterprise_id,
)
from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._errors import ca_bundle_error
from airflow_provider_oes._request import allocation_call, list_call, redacting
from airflow_provider_oes._retry import RetryPolicy
from airflow_provider_oes._settings import OESConnectionSettings
from airflow_provider_oes._time import parse_http_date
from airflow_provider_oes.exceptions import OESError, OESInvalidRequestError, OESNotFoundError, OESResponseError
from airflow_provider_oes.hooks._settlements import SettlementReads

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator
    from datetime import datetime

    import requests

    from airflow_provider_oes._request import ApiCall
    from airflow_provider_oes.models import Allocation

T = TypeVar("T")
R = TypeVar("R")


class OESHook(SettlementReads, BaseHook):
    """Talks to BitGo's OES API with the access token of an Airflow connection of type ``oes``.

    The connection's Host is the API base URL (default ``https://app.bitgo.com``; BitGo's test
    environment is ``https://app.bitgo-test.com``), its Password the access token, and the extra
    ``enterprise_id`` the default enterprise. One HTTP session is kept per hook and reused by every call.

    :param oes_conn_id: Airflow connection id of type ``oes``.
    """

    conn_name_attr = "oes_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "oes"
    hook_name = "BitGo OES"

    def __init__(self, oes_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.oes_conn_id = oes_conn_id
        self.last_server_time: float | None = None
        """The API server's clock (its ``Date``, epoch s) of the last allocation read, if it sent one; reset by
        every :meth:`get_allocation`, so a failed call leaves ``None``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(oes_conn_id={self.oes_conn_id!r})"

    @cached_property
    def settings(self) -> OESConnectionSettings:
        """The connection's settings, read once; the token is registered with Airflow's secrets masker."""
        return OESConnectionSettings.from_connection(self.get_connection(self.oes_conn_id))

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy built from the connection's ``max_retries`` and ``retry_max_wait`` extras."""
        return self.settings.retry_policy

    @cached_property
    def session(self) -> requests.Session:
        """The one ``requests.Session`` this hook reuses (connection pooling, auth header)."""
        import requests

        session = requests.Session()
        session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if self.settings.token:
            # On the session, not per request: requests merges per-request headers on every call, and the
            # redirects that could carry it elsewhere are switched off below.
            session.headers["Authorization"] = f"Bearer {self.settings.token}"
        session.verify = self.settings.verify
        # The proxy comes from one rule shared with the async client (_proxy.select_proxy), not from
        # requests' own reading of the environment (proxies, NO_PROXY, REQUESTS_CA_BUNDLE, .netrc).
        session.trust_env = False
        proxy = self.settings.proxy
        if proxy is not None:
            session.proxies = {"https": proxy.url, "http": proxy.url}
        return session

    def get_conn(self) -> requests.Session:
        """Return the hook's HTTP session (Airflow's conventional accessor)."""
        return self.session

    def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def resolve_enterprise_id(self, enterprise_id: str | None) -> str:
        """Return ``enterprise_id``, or the connection's default when it is ``None``; validated.

        :raises OESInvalidRequestError: when neither is set, or the id cannot be sent.
        """
        if enterprise_id is None:
            enterprise_id = self.settings.enterprise_id
            if enterprise_id is None:
                raise OESInvalidRequestError(
                    f"no enterprise id: pass enterprise_id to the task or set the 'enterprise_id' extra "
                    f"of connection {self.oes_conn_id!r}"
                )
        return validate_enterprise_id(enterprise_id)

    def get_allocation(self, allocation_id: str, enterprise_id: str | None = None) -> Allocation:
        """Fetch one client allocation or deallocation.

        Ids are checked locally first (no request is sent for a bad one). Transient failures are retried
        per the connection's retry settings; permanent ones raise at once.

        :param allocation_id: The allocation's UUID.
        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :raises OESError: a subclass saying what went wrong (see :mod:`airflow_provider_oes.exceptions`).
        """
        self.last_server_time = None
        allocation_id = validate_allocation_id(allocation_id)
        enterprise_id = self.resolve_enterprise_id(enterprise_id)
        return self._get_allocation(allocation_id, enterprise_id, self.retry_policy)

    def list_allocations(
        self,
        enterprise_id: str | None = None,
        *,
        allocation_ids: Collection[str] | None = None,
        statuses: Collection[str] | None = None,
        types: Collection[str] | None = None,
        currencies: Collection[str] | None = None,
        connection_ids: Collection[str] | None = None,
        partner_ids: Collection[str] | None = None,
        created_on_or_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        sort_field: str | None = None,
        sort_direction: str | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> Iterator[Allocation]:
        """Iterate over the allocations (and deallocations) that match every given filter, page by page.

        Arguments are checked before any request (a bad one raises :class:`OESInvalidRequestError` naming
        it), here rather than at the first ``next()``. Pages are fetched lazily, one request of at most
        ``page_size`` records each, with the same retries, errors and answer checks as
        :meth:`get_allocation`. A record that is not a valid allocation raises :class:`OESResponseError`:
        a listing never silently leaves one out.

        Paging is by page number (offset). With the default order (``sort_field=None``: ``createdAt``, then
        ``id``, ascending) an allocation created while the listing runs lands after every earlier one, so
        every allocation that existed and matched when the listing began, and still matches, is yielded
        exactly once; new ones may or may not appear at the end. A record that leaves the filter meanwhile
        (e.g. ``reserved`` -> ``cleared`` under ``statuses=["reserved"]``), or moves under another
        ``sort_field`` (``updatedAt``), shifts later records by one, which can then be missed; an id seen
        twice is yielded once.

        :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        :param allocation_ids: Only these allocations (UUIDs).
        :param statuses: Only these statuses: ``cleared``, ``released``, ``reserved``.
        :param types: Only ``allocation`` and/or ``deallocation`` records.
        :param currencies: Only these currencies, e.g. ``["ofctbtc", "ofcteth"]``.
        :param connection_ids: Only records of these connections (UUIDs).
        :param partner_ids: Only records of these partners (UUIDs).
        :param created_on_or_after: Only records created at or after this time (time-zone aware datetime or
            ISO 8601 string such as ``"2026-11-24T00:00:00Z"``).
        :param created_before: Only records created before this time.
        :param sort_field: ``id``, ``updatedAt``, ``quantity`` or ``currency``; ``None`` keeps the API's
            stable order (see above).
        :param sort_direction: ``ASC`` (default) or ``DESC`` for ``sort_field``.
        :param page_size: Records per request, 1 to 1,000.
        :raises OESError: a subclass saying what went wrong, when the iterator is created (bad arguments) or
            while iterating (a failed page).
        """
        enterprise_id = self.resolve_enterprise_id(enterprise_id)
        # Spelt out for DAG authors; ListFilters is the set (tests/hooks/test_list_allocations.py checks they match).
        filters: ListFilters = {
            "allocation_ids": allocation_ids,
            "statuses": statuses,
            "types": types,
            "currencies": currencies,
            "connection_ids": connection_ids,
            "partner_ids": partner_ids,
            "created_on_or_after": created_on_or_after,
            "created_before": created_before,
            "sort_field": sort_field,
            "sort_direction": sort_direction,
        }
        query = ListQuery.of(**filters)
        query.params(page_size=page_size)  # every argument checked now, not at the first next()
        return self._iter_allocations(enterprise_id, query, page_size)

    def _iter_allocations(self, enterprise_id: str, query: ListQuery, page_size: int) -> Iterator[Allocation]:
        def page(page_number: int) -> list[Any]:
            params = query.params(page_number=page_number, page_size=page_size)
            return self._call(list_call(self.settings, enterprise_id, params, kind="list"))

        def parse(record: Any, position: int) -> Allocation:
            return parse_listed_allocation(record, enterprise_id=enterprise_id, position=position)

        return self._paged(
            page, parse, page_size, f"the allocations list of enterprise {enterprise_id!r}", enterprise_id
        )

    def _paged(
        self,
        page: Callable[[int], list[Any]],
        parse: Callable[[Any, int], R],
        page_size: int,
        what: str,
        enterprise_id: str,
    ) -> Iterator[R]:
        """Page through a list route by page number: each record parsed (lazily, in order) and yielded once.

        :param page: Fetches the raw records of a page number.
        :param parse: Validates a record, given its position in the whole listing (named in its error).
        :param what: The listing as messages name it (``the allocations list of enterprise '...'``).
        """
        seen: set[Any] = set()
        position = 0
        for page_number in itertools.count():
            records = page(page_number)
            if len(records) > page_size:
                raise OESResponseError(
                    f"the OES API returned {len(records)} records for page {page_number} of {what}, more than the "
                    f"{page_size} asked for; refusing to page on",
                    enterprise_id=enterprise_id,
                )
            new = 0
            for record in records:
                parsed = parse(record, position)
                position += 1
                record_id = getattr(parsed, "id", None)
                if record_id in seen:
                    continue
                seen.add(record_id)
                new += 1
                yield parsed
            if len(records) < page_size:
                return
            if new == 0:
                # A full page of records already seen: a server ignoring pageNumber would loop forever.
                raise OESResponseError(
                    f"page {page_number} of {what} holds only records already listed; refusing to page on",
                    enterprise_id=enterprise_id,
                )

    def _call(self, call: ApiCall[T], policy: RetryPolicy | None = None) -> T:
        """One API call with its retries (the connection's policy by default); the token is stripped from errors."""
        url = self.settings.base_url + call.path
        with redacting(self.settings.token):
            return (policy or self.retry_policy).call(lambda: self._get_once(call, url))

    def _get_allocation(self, allocation_id: str, enterprise_id: str, policy: RetryPolicy) -> Allocation:
        return self._call(allocation_call(self.settings, allocation_id, enterprise_id), policy)

    def _get_once(self, call: ApiCall[T], url: str) -> T:
        """One attempt: the steps of :mod:`airflow_provider_oes._request` around this hook's requests I/O."""
        import requests
        import urllib3

        settings = self.settings
        call.check_token()
        started = call.attempt_started()
        try:
            response = self.session.get(
                url,
                params=call.params,
                headers=call.headers,
                timeout=(settings.connect_timeout, settings.read_timeout),
                # Per request, not only on the session: requests lets REQUESTS_CA_BUNDLE override a
                # session-level verify (psf/requests#3829), which would ignore the ca_bundle extra.
                verify=settings.verify,
                stream=True,
                allow_redirects=False,
            )
            try:
                body = _read_limited(response, call.limit, call.what, time.monotonic() + settings.read_timeout)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            call.attempt_ended(None, started)
            raise call.transport_error(exc, timed_out=isinstance(exc, requests.Timeout)) from None
        except OSError as exc:
            call.attempt_ended(None, started)
            # requests raises a bare OSError (after RequestException, which is one too) for a bad CA bundle.
            if settings.ca_bundle:
                raise ca_bundle_error(settings.ca_bundle, exc) from None
            raise
        call.attempt_ended(response.status_code, started)
        allocation = call.answer(response.status_code, body, response.headers.get("Retry-After"))
        # Only an answer that was read as an allocation proves its status at this server time.
        self.last_server_time = parse_http_date(response.headers.get("Date"))
        return allocation

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection against the real API (the connections UI "Test" button).

        Asks for a random allocation id under the connection's enterprise: a 404 proves the token and
        the enterprise are accepted; 401 and 403 say what is wrong.
        """
        probe_id = str(uuid.uuid4())
        try:
            enterprise_id = self.resolve_enterprise_id(None)
            self._get_allocation(probe_id, enterprise_id, RetryPolicy(max_retries=0))
        except OESNotFoundError:
            return True, (
                f"Connection works: the access token is accepted for enterprise {enterprise_id!r} "
                f"at {self.settings.base_url}."
            )
        except OESError as exc:
            # The random probe id would only puzzle whoever pressed "Test".
            return False, str(exc).replace(f"allocation {probe_id!r}", "a test request")
        return True, f"Connection works: enterprise {enterprise_id!r} at {self.settings.base_url}."

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's field behaviour (also declared in ``get_provider_info``)."""
        from airflow_provider_oes.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR


def _read_limited(response: requests.Response, limit: int, what: str, deadline: float) -> bytes:
    """Read at most ``limit + 1`` bytes by ``deadline`` (a ``time.monotonic()`` value).

    The size cap stops an endless body from exhausting memory; the deadline stops a body that drips in,
    each byte within the socket's read timeout, from holding a poke for hours.
    """
    declared = response.headers.get("Content-Length")
    check_declared_length(declared, limit, what)
    chunks: list[bytes] = []
    size = 0
    # With a Content-Length and no content coding, stop once that many bytes came off the wire instead of
    # asking the socket once more for an end. A gzip body is read to its end: its decoder flushes only there.
    plain = not response.headers.get("Content-Encoding")
    expected = int(declared) if plain and declared and declared.isdigit() else None
    while size <= limit and (expected is None or response.raw.tell() < expected):
        if time.monotonic() > deadline:
            import requests

            raise requests.exceptions.ReadTimeout("the body did not arrive within the read timeout")
        # read1: one socket read at most, so the deadline is checked between reads.
        chunk: bytes = response.raw.read1(limit + 1 - size, decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    # Compare the bytes read off the wire (tell()), not the decoded ones: a small gzip body decodes to
    # fewer bytes than its Content-Length and is complete.
    if declared and declared.isdigit() and len(data) <= limit and response.raw.tell() < int(declared):
        import requests

        raise requests.exceptions.ChunkedEncodingError("connection closed before the whole body arrived")
    return data
