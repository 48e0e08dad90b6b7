"""What the sensor and the operator share: their templated fields and the hook of the task's ``oes_conn_id``.

Cheap to import (DAG files import the sensor and operator): the hook module loads when a task first runs.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from airflow_provider_oes.hooks.oes import OESHook


class AllocationTaskMixin:
    """The templated fields of an allocation task, and an :class:`~airflow_provider_oes.hooks.oes.OESHook` for its
    ``oes_conn_id``."""

    template_fields: Collection[str] = ("allocation_id", "enterprise_id", "oes_conn_id")
    ui_color = "#e8f1fb"

    oes_conn_id: str

    @cached_property
    def hook(self) -> OESHook:
        """The hook for ``oes_conn_id`` (as rendered), created once per task run."""
        from airflow_provider_oes.hooks.oes import OESHook

        return OESHook(oes_conn_id=self.oes_conn_id)


def airflow_renders_start_trigger_templates() -> bool:
    """Airflow 3.3+ renders a start_from_trigger task's templated trigger kwargs in the triggerer."""
    from airflow import __version__ as airflow_version
    from packaging.version import Version

    return Version(Version(airflow_version).base_version) >= Version("3.3.0")


def airflow_ends_tasks_from_triggers() -> bool:
    """Whether this Airflow lets a trigger end its task (``TaskSuccessEvent``; every supported version does)."""
    try:
        from airflow.triggers.base import TaskSuccessEvent  # noqa: F401
    except ImportError:
        return False
    return True
