"""The shared poller of the deferred sensors' triggers and its strategies (``docs/internals/poller.rst``)."""

from __future__ import annotations

from airflow_provider_oes.triggers._polling.poller import (
    AllocationPoller,
    PollerRegistry,
    get_poller,
    register,
    running_pollers,
)
from airflow_provider_oes.triggers._polling.strategy import Fallback

__all__ = ["AllocationPoller", "Fallback", "PollerRegistry", "get_poller", "register", "running_pollers"]
