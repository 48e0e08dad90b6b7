"""Which error an HTTP answer or a transport failure becomes, and keeping the token out of errors.

Private: used by the sync hook and the async client alike (through :mod:`airflow_provider_oes._request`), so
the two cannot map the same answer differently. The error types themselves are public, in
:mod:`airflow_provider_oes.exceptions`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.exceptions import (
    OESAuthenticationError,
    OESConnectionError,
    OESError,
    OESInvalidRequestError,
    OESNotFoundError,
    OESPermissionDeniedError,
    OESRateLimitError,
    OESServerError,
)

if TYPE_CHECKING:
    from airflow_provider_oes._settings import OESConnectionSettings


_STATUS_TO_CLASS: dict[int, type[OESError]] = {
    400: OESInvalidRequestError,
    401: OESAuthenticationError,
    403: OESPermissionDeniedError,
    404: OESNotFoundError,
    429: OESRateLimitError,
}

_WHAT_TO_FIX: dict[type[OESError], str] = {
    OESInvalidRequestError: "check that the allocation id is a UUID and the enterprise id is right",
    OESAuthenticationError: (
        "check the access token in the connection (valid, not expired, scope settlement_network_read) "
        "and that its user is a member of the enterprise"
    ),
    OESPermissionDeniedError: (
        "the enterprise may have no OES license, or the token may not read this allocation; "
        "check the enterprise id and the token's permissions"
    ),
    OESNotFoundError: "check the allocation id, and that it belongs to this enterprise's client",
    OESRateLimitError: "BitGo's rate limit was hit; poll less often or batch allocations",
    OESServerError: "BitGo could not answer; this is usually temporary",
}

_WHAT_TO_FIX_OTHER: dict[type[OESError], str] = {
    **_WHAT_TO_FIX,
    OESInvalidRequestError: "check the ids (UUIDs), the filters and the paging of the request, and the enterprise id",
    OESPermissionDeniedError: (
        "the enterprise may have no OES license, or the token may lack the settlement_network_read scope; "
        "check the enterprise id and the token's permissions"
    ),
    OESNotFoundError: "check the id, and that this enterprise's client is a party to it",
    OESRateLimitError: "BitGo's rate limit was hit; poll less often",
}
"""The hints for requests about something other than allocations (settlements, transfers, disputes, partners)."""

_MAX_ERROR_TEXT = 500


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        data = json.loads(body[:65536])
    except (ValueError, RecursionError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = data.get(key)
        return str(value)[:_MAX_ERROR_TEXT] if value is not None else None

    return text("error"), text("name"), text("requestId")


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # An HTTP-date Retry-After is rare for APIs; fall back to backoff.
    return seconds if seconds >= 0 else None


def error_from_response(
    status_code: int,
    body: bytes,
    *,
    retry_after: str | None = None,
    allocation_id: str | None = None,
    enterprise_id: str | None = None,
    subject: str | None = None,
) -> OESError:
    """Build the error for a non-2xx answer of the OES API.

    :param status_code: The HTTP status.
    :param body: The raw response body (a JSON error body is read for ``error``, ``name`` and ``requestId``).
    :param retry_after: The raw ``Retry-After`` header, if any.
    :param allocation_id: The allocation asked for, named in the message.
    :param enterprise_id: The enterprise asked under, named in the message.
    :param subject: What was asked for when it is not an allocation (``settlement '...'``), named in the message.
    """
    cls = _STATUS_TO_CLASS.get(status_code) or (OESServerError if status_code >= 500 else OESError)
    error, name, request_id = _error_fields(body)
    hints = _WHAT_TO_FIX if subject is None else _WHAT_TO_FIX_OTHER
    subject = subject or _subject(allocation_id)
    parts = [f"OES API answered HTTP {status_code} for {subject} of enterprise {enterprise_id!r}"]
    if error:
        parts.append(f": {error}")
    if name:
        parts.append(f" [{name}]")
    if request_id:
        parts.append(f" (requestId {request_id})")
    hint = hints.get(cls)
    if hint:
        parts.append(f". {hint[0].upper()}{hint[1:]}.")
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "error": error,
        "name": name,
        "request_id": request_id,
        "allocation_id": allocation_id,
        "enterprise_id": enterprise_id,
    }
    if cls is OESRateLimitError:
        return OESRateLimitError("".join(parts), retry_after=_parse_retry_after(retry_after), **kwargs)
    return cls("".join(parts), **kwargs)


def _subject(allocation_id: str | None) -> str:
    return f"allocation {allocation_id!r}" if allocation_id else "the allocations list"


def redact_error(exc: OESError, secret: str | None, placeholder: str = "***") -> OESError:
    """Remove ``secret`` from every text of ``exc`` (message, args, the API's fields), in place; return ``exc``.

    The messages quote what the server said (its ``error`` text, a body snippet, a record's id), so a
    server that echoes the request's ``Authorization`` header back would otherwise put the access token
    into logs and task failures.

    :param exc: The error to clean.
    :param secret: The access token; nothing is done when it is empty.
    :param placeholder: What replaces it.
    """
    if not secret:
        return exc
    for key, value in list(vars(exc).items()):
        if isinstance(value, str) and secret in value:
            setattr(exc, key, value.replace(secret, placeholder))
    exc.args = tuple(a.replace(secret, placeholder) if isinstance(a, str) else a for a in exc.args)
    return exc


def is_certificate_error(exc: BaseException) -> bool:
    """True when a failed TLS certificate verification is behind ``exc`` (from requests or httpx).

    That is a setting to fix, not a blip: retrying cannot help, so it must not be treated as transient.

    :param exc: The transport's exception; its causes, contexts, ``reason`` and args are searched.
    """
    import ssl

    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return False


def tls_certificate_error(
    base_url: str, *, allocation_id: str | None = None, enterprise_id: str | None = None
) -> OESInvalidRequestError:
    """The permanent error for an API certificate that failed verification, saying what to fix.

    :param base_url: The API base URL that was called.
    :param allocation_id: The allocation asked for, if any.
    :param enterprise_id: The enterprise asked under.
    """
    return OESInvalidRequestError(
        f"the TLS certificate of the OES API at {base_url} could not be verified. If it is signed by a private "
        "CA, set the connection's 'ca_bundle' extra to a PEM file of that CA (verification cannot be turned off)",
        allocation_id=allocation_id,
        enterprise_id=enterprise_id,
    )


def check_ca_bundle(path: str) -> OESInvalidRequestError | None:
    """Load a ``ca_bundle`` extra the way the TLS library would; return the error to raise if it cannot be.

    Called after a TLS failure, to tell a bad bundle (a setting to fix) from a network problem.

    :param path: The extra's value.
    """
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return ca_bundle_error(path, exc)
    return None


def ca_bundle_error(path: str, exc: BaseException) -> OESInvalidRequestError:
    """The permanent error for a ``ca_bundle`` extra that cannot be loaded (missing file, not PEM).

    :param path: The extra's value.
    :param exc: What the TLS library raised.
    """
    return OESInvalidRequestError(
        f"connection extra 'ca_bundle' must be the path of a readable PEM file of CA certificates on this "
        f"machine, got {path!r} ({type(exc).__name__})"
    )


def missing_token_error(
    conn_id: str, *, allocation_id: str | None = None, enterprise_id: str | None = None
) -> OESAuthenticationError:
    """The error for a connection without an access token (raised before any request is sent).

    :param conn_id: The Airflow connection id.
    :param allocation_id: The allocation asked for, if any.
    :param enterprise_id: The enterprise asked under.
    """
    return OESAuthenticationError(
        f"connection {conn_id!r} has no access token: put the BitGo access token in its Password field",
        allocation_id=allocation_id,
        enterprise_id=enterprise_id,
    )


def transport_error(
    exc: BaseException,
    settings: OESConnectionSettings,
    *,
    timed_out: bool,
    allocation_id: str | None,
    enterprise_id: str,
    subject: str | None = None,
) -> OESError:
    """Map a transport failure (requests or httpx) to the error to raise, for the sync hook and the async client.

    Timeouts and dropped connections are transient (:class:`OESConnectionError`); an unusable ``ca_bundle``
    or a certificate that fails verification are settings to fix (:class:`OESInvalidRequestError`). Only the
    exception's class name is quoted: its text can carry the request URL. Through a proxy, messages name it
    (never its credentials), and its refusal of the tunnel follows the API's rules: 407 is permanent like 401,
    other 4xx are permanent, 5xx and 429 transient; a refused or silent proxy is a transient connection error.

    :param exc: What the HTTP library raised.
    :param settings: The connection's settings (base URL, timeouts and CA bundle are named in messages).
    :param timed_out: True when it was a connect or read timeout.
    :param allocation_id: The allocation asked for (``None`` for the list endpoint).
    :param enterprise_id: The enterprise asked under.
    :param subject: What was asked for when it is not an allocation, named in the message.
    """
    base_url, ca_bundle = settings.base_url, settings.ca_bundle
    connect_timeout, read_timeout = settings.connect_timeout, settings.read_timeout
    subject = subject or _subject(allocation_id)
    proxy = settings.proxy
    via = f" through proxy {proxy.display} ({proxy.source})" if proxy is not None else ""
    if proxy is not None:
        refusal = _proxy_refusal(exc, proxy.display, proxy.source, base_url, allocation_id, enterprise_id)
        if refusal is not None:
            return refusal
    if timed_out:
        return OESConnectionError(
            f"timed out talking to the OES API{via} for {subject} of enterprise {enterprise_id!r} "
            f"({type(exc).__name__}); connect/read timeouts are {connect_timeout}/{read_timeout} s",
            allocation_id=allocation_id,
            enterprise_id=enterprise_id,
        )
    bad_bundle = check_ca_bundle(ca_bundle) if ca_bundle else None
    if bad_bundle is not None:
        return bad_bundle
    if is_certificate_error(exc):
        error = tls_certificate_error(base_url, allocation_id=allocation_id, enterprise_id=enterprise_id)
        if proxy is not None and proxy.url.lower().startswith("https://"):
            # Either certificate may be the one refused: the proxy's is checked with the same trust.
            error.message = error.message.replace(
                " could not be verified", f" (or that of the https proxy {proxy.display}) could not be verified"
            )
            error.args = (error.message,)
        return error
    return OESConnectionError(
        f"no complete answer from the OES API at {base_url}{via} for {subject} of enterprise {enterprise_id!r}: "
        f"{type(exc).__name__}",
        allocation_id=allocation_id,
        enterprise_id=enterprise_id,
    )


_PROXY_STATUS = re.compile(r"^(?:Tunnel connection failed: )?([1-5]\d\d)(?: |$)")
"""A proxy's refusal of CONNECT as the libraries word it: requests (http.client) ``Tunnel connection failed:
407 Proxy Authentication Required``, httpx (httpcore) ``407 Proxy Authentication Required``."""


def _proxy_status(exc: BaseException) -> int | None:
    """The HTTP status with which a proxy refused to open the tunnel, found in ``exc``'s chain, if any."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            match = _PROXY_STATUS.match(item)
            if match:
                return int(match.group(1))
            continue
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return None


def _proxy_refusal(
    exc: BaseException,
    proxy: str,
    source: str,
    base_url: str,
    allocation_id: str | None,
    enterprise_id: str,
) -> OESError | None:
    """The error for a proxy that answered CONNECT with an error status, by the API's own rules: 407 is
    permanent like 401, 403 like 403, other 4xx permanent; 5xx and 429 transient. ``None`` if it did not."""
    status = _proxy_status(exc)
    if status is None or status < 400:
        return None
    kwargs: dict[str, Any] = {"status_code": status, "allocation_id": allocation_id, "enterprise_id": enterprise_id}
    said = f"the proxy {proxy} ({source}) answered HTTP {status} to the tunnel request for the OES API at {base_url}"
    if status == 407:
        return OESAuthenticationError(
            f"{said} (Proxy Authentication Required): check the user name and password in the proxy URL "
            "(percent-encoded)",
            **kwargs,
        )
    if status >= 500 or status == 429:
        return OESConnectionError(
            f"{said}: the proxy is overloaded or cannot reach the API; usually temporary", **kwargs
        )
    cls = OESPermissionDeniedError if status == 403 else OESInvalidRequestError
    return cls(f"{said}: the proxy does not allow this connection; ask its administrators", **kwargs)
