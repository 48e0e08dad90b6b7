"""Which HTTP(S) proxy a connection's requests go through: one rule for the sync hook and the async client.

:func:`select_proxy`: the ``proxy_url`` extra; else, with ``trust_env`` on, the environment's https proxy
(not for loopback or ``no_proxy`` hosts); else none. Both clients get it explicitly with their libraries'
own environment handling off. TLS to the API stays end to end. :class:`Proxy` never shows its credentials.
The rule in full: ``docs/internals/proxy.rst``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from airflow_provider_oes._api.paths import is_loopback
from airflow_provider_oes.exceptions import OESInvalidRequestError

if TYPE_CHECKING:
    from collections.abc import Mapping

PROXY_SCHEMES = ("http", "https")
"""Proxy schemes both clients support without extra packages."""


def redact_proxy_url(raw: str) -> str:
    """Return ``raw`` with any credentials replaced by ``***``, for messages; works on malformed values too.

    Everything between the scheme and the last ``@`` is treated as credentials (a password may itself hold
    ``/``, ``#`` or ``@``), so nothing of them survives even when the value is not a valid URL.

    :param raw: A proxy URL as configured.
    """
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "", raw
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"


@dataclass(frozen=True)
class Proxy:
    """The proxy chosen for a connection.

    :param url: The proxy URL, credentials included: only for the HTTP library, never for display.
    :param source: Where it came from, e.g. ``connection extra 'proxy_url'`` or ``environment variable
        HTTPS_PROXY``; named in error messages.
    """

    url: str = field(repr=False)
    source: str

    @property
    def display(self) -> str:
        """The proxy URL with its credentials replaced by ``***``: safe for logs and errors."""
        return redact_proxy_url(self.url)

    @property
    def has_credentials(self) -> bool:
        """True when the URL carries a user name or password."""
        parts = urlsplit(self.url)
        return parts.username is not None or parts.password is not None

    @property
    def secrets(self) -> list[str]:
        """Texts the secrets masker must hide: the password (as written and percent-decoded) and the
        ``Proxy-Authorization`` basic credentials."""
        parts = urlsplit(self.url)
        if parts.username is None and parts.password is None:
            return []
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        found = {parts.password or "", password, base64.b64encode(f"{user}:{password}".encode()).decode()}
        return sorted(s for s in found if s)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Proxy({self.display!r}, source={self.source!r})"


def parse_proxy_url(raw: object, source: str) -> str:
    """Check a proxy URL; return it stripped of surrounding blanks.

    :param raw: The configured value.
    :param source: What configured it (named in the error), e.g. ``connection extra 'proxy_url'``.
    :raises OESInvalidRequestError: naming ``source`` and the value without its credentials, for anything
        that is not ``http://`` or ``https://`` with a host, an optional port and nothing after it.
    """
    text = str(raw).strip()

    def bad(why: str) -> OESInvalidRequestError:
        return OESInvalidRequestError(
            f"{source} must be an http:// or https:// proxy URL like 'http://user:password@proxy.example.com:3128' "
            f"({why}), got {redact_proxy_url(text)!r}"
        )

    if not isinstance(raw, str):
        raise bad(f"not a string but {type(raw).__name__}")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise bad("it contains blanks or control characters")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise bad("its host or port cannot be read; percent-encode any @ : / # in the user name and password") from None
    if parts.scheme.lower() not in PROXY_SCHEMES or "://" not in text:
        raise bad(f"scheme {parts.scheme or 'missing'!r} is not supported")
    if not hostname:
        raise bad("no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("a proxy URL has no path, query or fragment")
    return text


def _env_value(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The variable ``name`` (lowercase wins when present, even empty, as in ``urllib.request``), if set."""
    for key in (name.lower(), name.upper()):
        if key in environ:
            value = environ[key].strip()
            return (key, value) if value else None
    return None


def _no_proxy_matches(no_proxy: str, host: str, port: int | None) -> bool:
    """True when a ``NO_PROXY`` list names ``host`` (and ``port``).

    Entries are comma separated: ``*`` (every host); a host name, matching itself and its sub-domains (a
    leading ``.`` or ``*.`` is ignored); an IP address or CIDR network (``10.0.0.0/8``); each optionally
    with ``:port``.
    """
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.replace(" ", ",").split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.startswith("["):  # [v6]:port
            entry, _, rest = entry[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, port_text = entry.partition(":")
            if port_text.isdigit():
                entry, entry_port = name, int(port_text)
        if entry_port is not None and entry_port != port:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            if address is not None and address in network:
                return True
            continue
        entry = entry.removeprefix("*").lstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def select_proxy(
    base_url: str, proxy_url: str | None, trust_env: bool, environ: Mapping[str, str] | None = None
) -> Proxy | None:
    """Return the proxy for requests to ``base_url``, or ``None`` for a direct connection (rule: module doc).

    :param base_url: The API base URL.
    :param proxy_url: The connection's ``proxy_url`` extra (already checked), or ``None``.
    :param trust_env: The connection's ``trust_env`` extra.
    :param environ: The environment to read (default: ``os.environ``).
    :raises OESInvalidRequestError: for an environment proxy URL that cannot be used, naming the variable.
    """
    if proxy_url:
        return Proxy(proxy_url, "connection extra 'proxy_url'")
    if not trust_env:
        return None
    environ = os.environ if environ is None else environ
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if is_loopback(host):
        # A local simulator must keep working on a machine whose HTTPS_PROXY is a remote egress proxy.
        return None
    found = _env_value(environ, "https_proxy") if parts.scheme == "https" else _env_value(environ, "http_proxy")
    found = found or _env_value(environ, "all_proxy")
    if found is None:
        return None
    no_proxy = _env_value(environ, "no_proxy")
    if no_proxy is not None and _no_proxy_matches(
        no_proxy[1], host, parts.port or (443 if parts.scheme == "https" else 80)
    ):
        return None
    name, value = found
    if "://" not in value:
        value = f"http://{value}"  # requests and httpx both read a bare host:port as an http proxy
    source = f"environment variable {name}"
    return Proxy(parse_proxy_url(value, source), source)
