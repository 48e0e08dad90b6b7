"""Provider metadata read by Airflow's providers manager (and the connections UI) without importing hooks.

This module is pure data on purpose: it is imported at Airflow start-up and by the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_oes import __version__
from airflow_provider_oes._constants import PRODUCTION_BASE_URL, TEST_BASE_URL

RELEASED_VERSIONS = ("0.1.0",)
"""Versions released before this one, newest first (``versions`` lists them after ``__version__``)."""

POLL_STRATEGIES = ("feed", "id_batches", "single")
"""Values of the ``poll_strategy`` extra; the first is the default."""


@dataclass(frozen=True)
class _Extra:
    label: str
    description: str
    type: str  # JSON-schema type: "string", "number", "integer" or "boolean"
    default: Any = None
    minimum: float | None = None
    choices: tuple[str, ...] | None = None


EXTRA_FIELDS: dict[str, _Extra] = {
    "enterprise_id": _Extra(
        "Enterprise ID",
        "Default BitGo enterprise id of the OES client; a task's enterprise_id overrides it.",
        "string",
    ),
    "connect_timeout": _Extra(
        "Connect timeout (s)", "Seconds to wait for a TCP/TLS connection to the API.", "number", 10.0, 0.001
    ),
    "read_timeout": _Extra("Read timeout (s)", "Seconds to wait for the API's answer.", "number", 30.0, 0.001),
    "ca_bundle": _Extra(
        "CA bundle path",
        "Path to a PEM file of CA certificates used to verify the API's TLS certificate "
        "(empty: the default trust store). TLS verification is always on.",
        "string",
    ),
    "max_retries": _Extra(
        "Max retries",
        "Retries of a transient failure (HTTP 5xx, 429, timeout, dropped connection) within one check.",
        "integer",
        3,
        0,
    ),
    "retry_max_wait": _Extra(
        "Max retry wait (s)",
        "Upper bound of the exponential backoff between retries, and of an honoured Retry-After.",
        "number",
        30.0,
        0,
    ),
    "rate_limit_requests": _Extra(
        "Rate limit: requests",
        "Requests per rate-limit period that deferred sensors on this connection may send "
        "(BitGo allows 360 per 60 s per user).",
        "integer",
        360,
        1,
    ),
    "rate_limit_period": _Extra(
        "Rate limit: period (s)", "Length of the rate-limit window in seconds.", "number", 60.0, 0.001
    ),
    "poll_strategy": _Extra(
        "Poll strategy",
        "How deferred sensors poll: 'feed' (default: read the enterprise's newly final allocations, newest "
        "first, about one request per interval whatever the number waiting), 'id_batches' (ask about the "
        "waiting ids, batch_size per list request) or 'single' (one GET per allocation). Empty: 'feed', or "
        "'single' when the deprecated 'Batch polling' is off.",
        "string",
        None,
        None,
        POLL_STRATEGIES,
    ),
    "batching": _Extra(
        "Batch polling (deprecated)",
        "Deprecated, use Poll strategy. Off (with Poll strategy empty) means 'single': one GET per allocation.",
        "boolean",
        True,
    ),
    "batch_size": _Extra(
        "Batch size", "Allocation ids asked for in one list request by id batches.", "integer", 100, 1
    ),
    "feed_overlap": _Extra(
        "Feed overlap (s)",
        "Seconds each change-feed poll reaches back behind the server time of the previous one: the clock "
        "skew between the API's Date header and its updatedAt stamps plus the commit lag it tolerates.",
        "number",
        30.0,
        0,
    ),
    "feed_page_size": _Extra(
        "Feed page size", "Allocations per change-feed page (at most what the API allows).", "integer", 1000, 1
    ),
    "reconcile_interval": _Extra(
        "Reconciliation interval (s)",
        "How often the change feed's safety net re-checks every waiting allocation by id, at most one list "
        "request per poll interval.",
        "number",
        600.0,
        1,
    ),
    "proxy_url": _Extra(
        "Proxy URL",
        "HTTP(S) proxy that carries every request of this connection, e.g. http://user:password@proxy:3128 "
        "(http:// or https://; credentials optional, percent-encoded). TLS to the API stays end to end "
        "(CONNECT tunnel). Empty: the environment's proxy, if any.",
        "string",
    ),
    # Not named "*proxy*": Airflow hides the value of any extra whose name contains "proxy" (a secret), and
    # would show this checkbox's default as "***" in the connection form.
    "trust_env": _Extra(
        "Use proxy environment variables",
        "Without a Proxy URL, send requests through HTTPS_PROXY / ALL_PROXY (NO_PROXY honoured; never for "
        "127.0.0.1/localhost). Off: ignore the environment's proxy variables.",
        "boolean",
        True,
    ),
}
"""Every extra an ``oes`` connection understands, with its default: the UI form, the settings parser and
the retry policy all read this one table."""


def _conn_field(extra: _Extra) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [extra.type, "null"]}
    if extra.default is not None:
        schema["default"] = extra.default
    if extra.minimum is not None:
        schema["minimum"] = extra.minimum
    return {"label": extra.label, "description": extra.description, "schema": schema}


UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"host": "API base URL", "password": "Access token"},
    "placeholders": {
        "host": f"{PRODUCTION_BASE_URL} (production) or {TEST_BASE_URL} (test environment)",
        "password": "BitGo access token with scope settlement_network_read",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider.yaml`` schema."""
    integration = "BitGo Off-Exchange Settlement"
    return {
        "package-name": "airflow-provider-oes",
        "name": "BitGo OES",
        "description": "Gate Airflow pipelines on BitGo Off-Exchange Settlement (OES) client allocations.",
        "versions": [__version__, *RELEASED_VERSIONS],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://developers.bitgo.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": integration, "python-modules": ["airflow_provider_oes.hooks.oes"]}],
        "sensors": [
            {
                "integration-name": integration,
                "python-modules": [
                    "airflow_provider_oes.sensors.allocation",
                    "airflow_provider_oes.sensors.settlement",
                ],
            }
        ],
        "operators": [
            {"integration-name": integration, "python-modules": ["airflow_provider_oes.operators.allocation"]}
        ],
        "triggers": [
            {
                "integration-name": integration,
                "python-modules": [
                    "airflow_provider_oes.triggers.allocation",
                    "airflow_provider_oes.triggers.event",
                    "airflow_provider_oes.triggers.settlement",
                    "airflow_provider_oes.triggers.settlement_event",
                ],
            }
        ],
        # oes://<enterprise id>/allocations/<status> (assets.allocations_asset_uri): a scheme Airflow knows,
        # kept as written (Airflow's no-op normalizer).
        "asset-uris": [{"schemes": ["oes"], "handler": None}],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_oes.hooks.oes.OESHook",
                "hook-name": "BitGo OES",
                "connection-type": "oes",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": {name: _conn_field(extra) for name, extra in EXTRA_FIELDS.items()},
            }
        ],
    }
