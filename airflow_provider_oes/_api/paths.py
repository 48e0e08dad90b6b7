"""Ids, endpoint paths, base URLs and the enterprise header: where a request goes, checked before it leaves."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

from airflow_provider_oes import __version__
from airflow_provider_oes._constants import PRODUCTION_BASE_URL, TEST_BASE_URL
from airflow_provider_oes.exceptions import OESInvalidRequestError

DEFAULT_BASE_URL = PRODUCTION_BASE_URL
"""A connection with an empty Host talks to BitGo's production API."""

USER_AGENT = f"airflow-provider-oes/{__version__}"
"""Sent with every request, so BitGo can tell this provider's traffic apart."""

ENTERPRISES_PREFIX = "/api/network/v1/enterprises"
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
"""A UUID in its canonical 8-4-4-4-12 hex form (allocation, connection and partner ids)."""
_MAX_ENTERPRISE_ID_LENGTH = 128
_MAX_SHOWN = 80


def shown(value: object) -> str:
    """repr() of a bad value, cut short so a 10 kB id does not flood the log."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(str(value))} characters)"


def validate_allocation_id(allocation_id: object) -> str:
    """Return the allocation id if it is a UUID in its canonical 8-4-4-4-12 hex form.

    :raises OESInvalidRequestError: naming the value, before any request is sent.
    """
    if not isinstance(allocation_id, str) or not UUID.fullmatch(allocation_id):
        raise OESInvalidRequestError(
            f"allocation_id must be a UUID like 'a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab', got {shown(allocation_id)}",
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
        raise OESInvalidRequestError(f"enterprise_id {problem}, got {shown(enterprise_id)}")
    assert isinstance(enterprise_id, str)
    return enterprise_id


def segment(value: str) -> str:
    """One percent-encoded path segment (``/``, ``.`` and everything else reserved encoded)."""
    return quote(value, safe="")


def allocations_path(enterprise_id: str) -> str:
    """Path of the list endpoint for an (already validated) enterprise id."""
    return f"{ENTERPRISES_PREFIX}/{segment(enterprise_id)}/clients/allocations"


def allocation_path(enterprise_id: str, allocation_id: str) -> str:
    """Path of the single-allocation endpoint, each id one percent-encoded segment."""
    return f"{allocations_path(enterprise_id)}/{segment(allocation_id)}"


def is_loopback(host: str) -> bool:
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
            f"the connection's host must be a URL like {PRODUCTION_BASE_URL!r} or {TEST_BASE_URL!r}, got {shown(host)}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise OESInvalidRequestError(
            "the connection's host must not carry credentials, a query or a fragment; "
            f"put only the scheme, host and port there, got a URL for host {parts.hostname!r}"
        )
    if parts.scheme == "http" and not is_loopback(hostname):
        raise OESInvalidRequestError(
            f"the connection's host {shown(host)} uses plain http: the access token would travel "
            "unencrypted. Use https:// (http:// is allowed only for 127.0.0.1/localhost)."
        )
    netloc = parts.netloc
    try:
        has_port = parts.port is not None
    except ValueError:
        raise OESInvalidRequestError(f"the connection's host has a bad port: {shown(host)}") from None
    if port and not has_port:
        netloc = f"{netloc}:{int(port)}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


ENTERPRISE_ID_HEADER = "enterprise-id"
"""Header naming the enterprise on every request, besides the path, as BitGo's own SDK sends it."""


def enterprise_id_header_value(enterprise_id: str) -> str:
    """The ``enterprise-id`` header's value for an (already validated) enterprise id.

    The id itself; one outside ASCII (no real enterprise id is) goes percent-encoded as UTF-8, as in the
    path, because HTTP clients cannot send it raw (httpx encodes header text as ASCII).
    """
    return enterprise_id if enterprise_id.isascii() else segment(enterprise_id)
