"""The shared poller of the deferred sensors' triggers, its strategies and resources (``docs/internals/poller.rst``)."""

from __future__ import annotations

from airflow_provider_oes.triggers._polling.poller import FailFastWaiter, Poller
from airflow_provider_oes.triggers._polling.registry import PollerRegistry, get_poller, register, running_pollers
from airflow_provider_oes.triggers._polling.strategy import Fallback

__all__ = ["FailFastWaiter", "Fallback", "Poller", "PollerRegistry", "get_poller", "register", "running_pollers"]
