"""Apache Airflow provider for BitGo's Off-Exchange Settlement (OES) client-allocation API.

Nothing heavy is imported here: DAG files that import the sensor or operator pay only for what they use.
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
