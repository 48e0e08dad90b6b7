"""Reading an ``oes`` Airflow connection into typed settings, shared by the sync hook and the trigger.

The extras read here are exactly the ``conn-fields`` declared in ``get_provider_info`` (one list,
:data:`~airflow_provider_oes.get_provider_info.EXTRA_FIELDS`), so the UI form and the hook cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_oes._api import normalize_base_url
from airflow_provider_oes._proxy import Proxy, parse_proxy_url, select_proxy
from airflow_provider_oes._retry import RetryPolicy
from airflow_provider_oes.exceptions import OESInvalidRequestError
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS

if TYPE_CHECKING:
    from airflow.sdk import Connection


def _coerce(name: str, raw: Any) -> Any:
    spec = EXTRA_FIELDS[name]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return spec.default
    try:
        if spec.type == "boolean":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"true", "1", "yes", "on"}:
                return True
            if text in {"false", "0", "no", "off"}:
                return False
            raise ValueError
        if spec.type == "integer":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value: Any = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        elif spec.type == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):  # "inf"/"nan" parse as floats but are no usable timeout or wait
                raise ValueError
        else:
            text = str(raw).strip()
            if spec.choices is not None and text not in spec.choices:
                raise ValueError
            return text
    except (TypeError, ValueError):
        kind = f"one of {', '.join(spec.choices)}" if spec.choices else f"a {spec.type}"
        raise OESInvalidRequestError(f"connection extra {name!r} must be {kind}, got {raw!r}") from None
    if spec.minimum is not None and not value >= spec.minimum:
        raise OESInvalidRequestError(f"connection extra {name!r} must be at least {spec.minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class OESConnectionSettings:
    """Everything the hook and the trigger need from an ``oes`` connection.

    The access token and the proxy URL (which may carry credentials) are excluded from ``repr`` so a
    settings object can be logged safely.
    """

    conn_id: str
    base_url: str
    token: str = field(repr=False)
    # Defaults from the extras table, so that a settings object built in code matches an empty extra.
    enterprise_id: str | None = EXTRA_FIELDS["enterprise_id"].default
    connect_timeout: float = EXTRA_FIELDS["connect_timeout"].default
    read_timeout: float = EXTRA_FIELDS["read_timeout"].default
    ca_bundle: str | None = EXTRA_FIELDS["ca_bundle"].default
    max_retries: int = EXTRA_FIELDS["max_retries"].default
    retry_max_wait: float = EXTRA_FIELDS["retry_max_wait"].default
    rate_limit_requests: int = EXTRA_FIELDS["rate_limit_requests"].default
    rate_limit_period: float = EXTRA_FIELDS["rate_limit_period"].default
    poll_strategy: str | None = EXTRA_FIELDS["poll_strategy"].default
    batching: bool = EXTRA_FIELDS["batching"].default
    batch_size: int = EXTRA_FIELDS["batch_size"].default
    feed_overlap: float = EXTRA_FIELDS["feed_overlap"].default
    feed_page_size: int = EXTRA_FIELDS["feed_page_size"].default
    reconcile_interval: float = EXTRA_FIELDS["reconcile_interval"].default
    proxy_url: str | None = field(default=EXTRA_FIELDS["proxy_url"].default, repr=False)
    trust_env: bool = EXTRA_FIELDS["trust_env"].default

    @property
    def strategy(self) -> str:
        """The poller's strategy: ``poll_strategy`` if set, else ``single`` when ``batching`` is off, else ``feed``."""
        if self.poll_strategy:
            return self.poll_strategy
        return "feed" if self.batching else "single"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of the ``max_retries`` and ``retry_max_wait`` extras (sync hook and trigger alike)."""
        return RetryPolicy(max_retries=self.max_retries, max_wait=self.retry_max_wait)

    @property
    def verify(self) -> bool | str:
        """What to pass as TLS verification: always on; a CA bundle path when one is set."""
        return self.ca_bundle or True

    @cached_property
    def proxy(self) -> Proxy | None:
        """The proxy every request of this connection goes through, or ``None`` for direct connections.

        Chosen once per settings object by :func:`airflow_provider_oes._proxy.select_proxy` (the
        ``proxy_url`` extra, else the environment's proxy unless ``trust_env`` is off or the API is
        on loopback / in ``NO_PROXY``), for the sync hook and the async client alike.

        :raises OESInvalidRequestError: for an environment proxy variable that cannot be used.
        """
        return select_proxy(self.base_url, self.proxy_url, self.trust_env)

    @classmethod
    def from_connection(cls, conn: Connection) -> OESConnectionSettings:
        """Read and check an Airflow connection of type ``oes``; register its token and proxy credentials with
        the secrets masker.

        :raises OESInvalidRequestError: naming the bad field, for a bad host or extra.
        """
        extra = conn.extra_dejson if conn.extra else {}
        if not isinstance(extra, dict):
            raise OESInvalidRequestError(f"connection {conn.conn_id!r}: extra must be a JSON object")
        values = {name: _coerce(name, extra.get(name)) for name in EXTRA_FIELDS}
        values["enterprise_id"] = values["enterprise_id"] or None
        if values["proxy_url"]:
            values["proxy_url"] = parse_proxy_url(extra.get("proxy_url"), "connection extra 'proxy_url'")
        base_url = normalize_base_url(conn.host, conn.port)
        if values["proxy_url"] and not base_url.startswith("https://"):
            raise OESInvalidRequestError(
                f"connection {conn.conn_id!r}: a proxy needs an https:// API URL (got {base_url!r}): through a "
                "proxy, plain http would show the access token to the proxy"
            )
        settings = cls(conn_id=conn.conn_id, base_url=base_url, token=conn.password or "", **values)
        # Here, where the secrets are read, so that no caller (hook or trigger) can forget them. The proxy
        # is chosen now too, so that a bad environment proxy is reported with the connection's other errors.
        secrets = [settings.token] if settings.token else []
        if settings.proxy is not None:
            secrets += settings.proxy.secrets
        if secrets:
            from airflow.sdk.log import mask_secret

            for secret in secrets:
                mask_secret(secret)
        return settings
