"""One API request, step by step, written once for the sync hook and the async client.

Each client does only its own I/O (send the GET, read at most :attr:`ApiCall.limit` bytes) and calls these
steps around it: :meth:`ApiCall.check_token`, :meth:`ApiCall.attempt_started`, :meth:`ApiCall.attempt_ended`
(the request metrics, by the kind the caller named), :meth:`ApiCall.transport_error`, :meth:`ApiCall.answer`,
and :class:`redacting` around the whole call. The steps in order: ``docs/internals/requests.rst``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow_provider_oes._api import (
    ENTERPRISE_ID_HEADER,
    MAX_LIST_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES,
    allocation_path,
    allocations_path,
    enterprise_id_header_value,
    parse_allocation_body,
    parse_allocations_list_body,
)
from airflow_provider_oes._errors import error_from_response, missing_token_error, redact_error, transport_error
from airflow_provider_oes._metrics import outcome, request, retry, tags_for
from airflow_provider_oes.exceptions import OESError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from airflow_provider_oes._metrics import Batch
    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes.models import Allocation

T = TypeVar("T")


class ApiCall(Generic[T]):
    """What one API call is about, and the steps every attempt of it takes around the client's I/O.

    Build one with :func:`allocation_call` or :func:`list_call`; it is reused by every retry.

    :param settings: The connection's settings (token, base URL, timeouts, CA bundle).
    :param path: The endpoint path (ids already validated and encoded).
    :param params: Query parameters, if any.
    :param limit: The largest body accepted, in bytes.
    :param parse: Turns a 200 body into the result.
    :param allocation_id: The allocation asked for (``None`` for the list endpoint), named in errors.
    :param enterprise_id: The enterprise asked under, named in errors.
    :param subject: What is asked for when it is not an allocation (``settlement '...'``, ``the settlements
        list``), named in errors and logs; ``None`` (the default) names the allocation, or the allocations list.
    :param kind: The request's kind in the metrics, named by the caller (one of
        :data:`~airflow_provider_oes._metrics.REQUEST_KINDS`): ``single``, ``id_batch``, ``feed_page`` or ``list``.
    """

    __slots__ = (
        "allocation_id",
        "attempts",
        "batch",
        "enterprise_id",
        "headers",
        "kind",
        "limit",
        "params",
        "parse",
        "path",
        "settings",
        "subject",
        "what",
    )

    def __init__(
        self,
        settings: OESConnectionSettings,
        path: str,
        *,
        params: dict[str, str] | None,
        limit: int,
        parse: Callable[[bytes], T],
        allocation_id: str | None,
        enterprise_id: str,
        kind: str,
        subject: str | None = None,
    ) -> None:
        self.settings = settings
        self.path = path
        self.params = params
        self.limit = limit
        self.parse = parse
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.subject = subject
        """What was asked for when it is not an allocation, as the caller named it (``None`` for allocations)."""
        named = subject or (f"allocation {allocation_id!r}" if allocation_id else "the allocations list")
        self.what = f"{named} of enterprise {enterprise_id!r}"
        """What was asked for, as error messages name it."""
        self.headers = {ENTERPRISE_ID_HEADER: enterprise_id_header_value(enterprise_id)}
        """Headers of this call besides the client's own: the enterprise, as BitGo's SDK sends it on every
        request (a gateway can check it against the path)."""
        self.kind = kind
        """The request's kind in the metrics, as the caller named it."""
        self.attempts = 0
        """HTTP attempts made so far (retries included)."""
        self.batch: Batch | None = None
        """Where the request metrics are gathered (the shared poller's client sets it); ``None``: sent at once."""

    def check_token(self) -> None:
        """Step 1: refuse to send a request without an access token.

        :raises OESAuthenticationError: naming the connection and what to fix.
        """
        if not self.settings.token:
            raise missing_token_error(
                self.settings.conn_id, allocation_id=self.allocation_id, enterprise_id=self.enterprise_id
            )

    def attempt_started(self) -> float:
        """Step 2: the request is about to be sent; return the start time for :meth:`attempt_ended`."""
        self.attempts += 1
        if self.attempts > 1:
            retry(self.kind, tags_for(self.settings.conn_id, self.enterprise_id), self.batch)
        return time.perf_counter()

    def attempt_ended(self, status_code: int | None, started: float) -> None:
        """Step 3: the attempt is over: count it by kind and outcome and time it.

        :param status_code: The HTTP status, or ``None`` when no answer came (refused, reset, timed out, TLS).
        :param started: What :meth:`attempt_started` returned.
        """
        request(
            self.kind,
            outcome(status_code),
            time.perf_counter() - started,
            tags_for(self.settings.conn_id, self.enterprise_id),
            self.batch,
        )

    def transport_error(self, exc: BaseException, *, timed_out: bool) -> OESError:
        """Step 4: the error to raise for a send or read that failed (the client raises it ``from None``).

        :param exc: What the HTTP library raised.
        :param timed_out: True for a connect or read timeout.
        """
        return transport_error(
            exc,
            self.settings,
            timed_out=timed_out,
            allocation_id=self.allocation_id,
            enterprise_id=self.enterprise_id,
            subject=self.subject,
        )

    def answer(self, status_code: int, body: bytes, retry_after: str | None) -> T:
        """Step 5: map a non-200 status to its error, or parse the 200 body.

        :param status_code: The HTTP status.
        :param body: The body, as read (at most ``limit + 1`` bytes).
        :param retry_after: The raw ``Retry-After`` header, if any.
        :raises OESError: the subclass for the status, or :class:`OESResponseError` for a body that cannot be used.
        """
        if status_code != 200:
            raise error_from_response(
                status_code,
                body,
                retry_after=retry_after,
                allocation_id=self.allocation_id,
                enterprise_id=self.enterprise_id,
                subject=self.subject,
            )
        return self.parse(body)


def allocation_call(settings: OESConnectionSettings, allocation_id: str, enterprise_id: str) -> ApiCall[Allocation]:
    """The single GET of one allocation (ids already validated).

    :param settings: The connection's settings.
    :param allocation_id: The allocation's UUID.
    :param enterprise_id: The client's enterprise id.
    """

    def parse(body: bytes) -> Allocation:
        return parse_allocation_body(
            body, allocation_id=allocation_id, enterprise_id=enterprise_id, secret=settings.token
        )

    return ApiCall(
        settings,
        allocation_path(enterprise_id, allocation_id),
        params=None,
        limit=MAX_RESPONSE_BYTES,
        parse=parse,
        allocation_id=allocation_id,
        enterprise_id=enterprise_id,
        kind="single",
    )


def list_call(
    settings: OESConnectionSettings, enterprise_id: str, params: dict[str, str], *, kind: str
) -> ApiCall[list[Any]]:
    """One page of the list endpoint; the result is its raw records (each validated by the caller).

    :param settings: The connection's settings.
    :param enterprise_id: The client's enterprise id (validated).
    :param params: The query parameters (validated).
    :param kind: What the caller reads the list for, in the metrics: ``list`` (a plain listing), ``id_batch``
        (given ids) or ``feed_page`` (the change feed).
    """

    def parse(body: bytes) -> list[Any]:
        return parse_allocations_list_body(body, enterprise_id=enterprise_id, secret=settings.token)

    return ApiCall(
        settings,
        allocations_path(enterprise_id),
        params=params,
        limit=MAX_LIST_RESPONSE_BYTES,
        parse=parse,
        allocation_id=None,
        enterprise_id=enterprise_id,
        kind=kind,
    )


class redacting:
    """Step 6: strip the access token from any :class:`OESError` raised inside the block, in place.

    Messages quote the server's words (its ``error`` text, a body snippet, a record's id); a server that
    echoes the ``Authorization`` header must not put the token into logs or task failures. Works around
    sync and async code alike (``with redacting(token): return await ...``).

    :param secret: The access token.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Returns None: the error (now redacted) goes on as it was raised.
        if isinstance(exc, OESError):
            redact_error(exc, self._secret)
            # As ``raise exc from exc.__cause__`` would: the errors of earlier attempts are not shown with it.
            exc.__suppress_context__ = True
