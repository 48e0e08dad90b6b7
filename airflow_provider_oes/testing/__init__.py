"""
Offline test helpers for the OES provider: a local OES API simulator and a pytest plugin.

The heavy names are imported lazily (module ``__getattr__``) so that ``import
airflow_provider_oes.testing`` costs nothing: FastAPI and uvicorn load only when a simulator is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_oes.testing.simulator import (
        UNLICENSED_ENTERPRISE_ID,
        OESSimulator,
        OESSimulatorClient,
        OESSimulatorProcess,
    )

__all__ = ["UNLICENSED_ENTERPRISE_ID", "OESSimulator", "OESSimulatorClient", "OESSimulatorProcess"]


def __getattr__(name: str) -> Any:
    """
    Import the simulator module on first access of one of its public names.

    :param name: attribute requested from this package.
    """
    if name in __all__:
        module = importlib.import_module("airflow_provider_oes.testing.simulator")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
