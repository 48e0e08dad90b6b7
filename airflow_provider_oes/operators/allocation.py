"""Operators that fetch one OES allocation, or list many, and return them to XCom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_provider_oes._constants import DEFAULT_CONN_ID, DEFAULT_LIST_PAGE_SIZE
from airflow_provider_oes._task import AllocationTaskMixin

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_oes._api import ListFilters


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


class ListAllocationsOperator(AllocationTaskMixin, BaseOperator):
    """List the allocations (and deallocations) matching filters, for reconciliation, e.g. "all released yesterday".

    Pages through BitGo's list endpoint with :meth:`OESHook.list_allocations
    <airflow_provider_oes.hooks.oes.OESHook.list_allocations>` (same validation, retries and errors). The
    result goes to XCom as ``return_value``, a list of allocations in the API's JSON shape; or, with
    ``output_path``, to a JSON Lines file (one allocation per line), and XCom gets ``{"path": ..., "count":
    ...}``. A listing is never cut short: more than ``max_records`` matches fail the task (XCom lives in the
    metadata DB: write big listings to a file).

    :param enterprise_id: The client's enterprise id; ``None`` uses the connection's ``enterprise_id``.
        Templated.
    :param statuses: Only these statuses (``cleared``, ``released``, ``reserved``). Templated.
    :param types: Only ``allocation`` and/or ``deallocation`` records. Templated.
    :param currencies: Only these currencies, e.g. ``["ofctbtc"]``. Templated.
    :param connection_ids: Only records of these connections (UUIDs). Templated.
    :param partner_ids: Only records of these partners (UUIDs). Templated.
    :param allocation_ids: Only these allocations (UUIDs). Templated.
    :param created_on_or_after: Only records created at or after this time: a time-zone aware datetime or an
        ISO 8601 string, e.g. ``"{{ data_interval_start }}"``. Templated.
    :param created_before: Only records created before this time, e.g. ``"{{ data_interval_end }}"`` (BitGo's
        spec says "on or before": a record created exactly at the bound may be listed). Templated.
    :param sort_field: ``id``, ``updatedAt``, ``quantity`` or ``currency``; ``None`` (default) keeps the
        API's stable order, ``createdAt`` then ``id`` ascending.
    :param sort_direction: ``ASC`` or ``DESC`` for ``sort_field``.
    :param page_size: Records per request, 1 to 1,000.
    :param max_records: Most matches accepted; more fail the task rather than return a partial list.
        ``None``: no limit (only sensible with ``output_path``).
    :param output_path: Write the listing to this JSON Lines file instead of XCom. Templated.
    :param oes_conn_id: Airflow connection id of type ``oes``; default ``oes_default``. Templated.
    """

    template_fields: Sequence[str] = (
        "enterprise_id",
        "statuses",
        "types",
        "currencies",
        "connection_ids",
        "partner_ids",
        "allocation_ids",
        "created_on_or_after",
        "created_before",
        "output_path",
        "oes_conn_id",
    )

    def __init__(
        self,
        *,
        enterprise_id: str | None = None,
        statuses: Collection[str] | None = None,
        types: Collection[str] | None = None,
        currencies: Collection[str] | None = None,
        connection_ids: Collection[str] | None = None,
        partner_ids: Collection[str] | None = None,
        allocation_ids: Collection[str] | None = None,
        created_on_or_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        sort_field: str | None = None,
        sort_direction: str | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
        max_records: int | None = 10_000,
        output_path: str | None = None,
        oes_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.enterprise_id = enterprise_id
        self.statuses = statuses
        self.types = types
        self.currencies = currencies
        self.connection_ids = connection_ids
        self.partner_ids = partner_ids
        self.allocation_ids = allocation_ids
        self.created_on_or_after = created_on_or_after
        self.created_before = created_before
        self.sort_field = sort_field
        self.sort_direction = sort_direction
        self.page_size = page_size
        self.max_records = max_records
        self.output_path = output_path
        self.oes_conn_id = oes_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]] | dict[str, Any]:
        """List the matching allocations; return them (or, with ``output_path``, where they were written)."""
        from airflow.sdk.exceptions import AirflowException

        if self.max_records is not None and (
            isinstance(self.max_records, bool) or not isinstance(self.max_records, int) or self.max_records < 0
        ):
            raise AirflowException(f"max_records must be an integer >= 0 or None, got {self.max_records!r}")
        from airflow_provider_oes._api import LIST_FILTER_NAMES

        # The filters are attributes of the same names (templated ones rendered by now).
        filters = cast("ListFilters", {name: getattr(self, name) for name in LIST_FILTER_NAMES})
        listing = self.hook.list_allocations(self.enterprise_id, page_size=self.page_size, **filters)
        records = (allocation.to_json_dict() for allocation in listing)
        if self.output_path:
            count = self._write_json_lines(records, self.output_path)
            self.log.info("Wrote %d allocations to %s", count, self.output_path)
            return {"path": self.output_path, "count": count}
        listed: list[dict[str, Any]] = []
        for record in records:
            self._check_count(len(listed) + 1)
            listed.append(record)
        self.log.info("Listed %d allocations", len(listed))
        return listed

    def _check_count(self, count: int) -> None:
        if self.max_records is not None and count > self.max_records:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(
                f"more than max_records={self.max_records} allocations match; narrow the filters, raise "
                "max_records, or write the listing to a file with output_path"
            )

    def _write_json_lines(self, records: Iterator[dict[str, Any]], path: str) -> int:
        """Write to a temporary file beside ``path`` and rename it: a failed listing leaves no partial file."""
        import json
        import os
        import tempfile

        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".oes-list-", suffix=".jsonl.tmp", dir=folder)
        count = 0
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                for record in records:
                    count += 1
                    self._check_count(count)
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return count
