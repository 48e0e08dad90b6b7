"""Operator that fetches one OES allocation and returns it to XCom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_oes._constants import DEFAULT_CONN_ID
from airflow_provider_oes._task import AllocationTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class GetAllocationOperator(AllocationTaskMixin, BaseOperator):
    """Fetch a BitGo OES client allocation (or deallocation) once, without waiting for it to be final.

    The allocation is returned in the API's JSON shape (camelCase keys, amounts as base-unit strings),
    so Airflow pushes it to XCom as ``return_value``: use ``.output`` downstream, or map the operator
    over many ids with ``.expand(allocation_id=[...])``. The status is not judged here: a ``released``
    allocation is returned like any other. Use
    :class:`~airflow_provider_oes.sensors.allocation.AllocationStatusSensor` to gate on ``cleared``.

    :param allocation_id: UUID of the allocation to fetch. Templated.
    :param enterprise_id: The client's BitGo enterprise id; ``None`` uses the connection's
        ``enterprise_id`` extra. Templated.
    :param oes_conn_id: Airflow connection id of type ``oes``; default ``oes_default``. Templated.

    Given ``outlets=[asset, ...]``, the fetched allocation (id, type, status, amount, connectionId, reason) is
    attached to each outlet's asset event ``extra`` (whatever its status: the operator does not judge it).
    """

    def __init__(
        self,
        *,
        allocation_id: str,
        enterprise_id: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id
        self.oes_conn_id = oes_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch the allocation and return its JSON shape (pushed to XCom by Airflow)."""
        from airflow_provider_oes.assets import attach_allocation_to_outlets

        allocation = self.hook.get_allocation(self.allocation_id, self.enterprise_id)
        self.log.info("Fetched %s", allocation.describe())
        if self.outlets:
            attach_allocation_to_outlets(
                self,
                context,
                allocation,
                enterprise_id=self.hook.resolve_enterprise_id(self.enterprise_id),
                oes_conn_id=self.oes_conn_id,
            )
        return allocation.to_json_dict()
