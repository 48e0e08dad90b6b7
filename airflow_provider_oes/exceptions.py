"""The public errors of the OES provider: catch these in DAG code and callbacks.

Every :class:`OESError` carries ``status_code`` (``None`` when raised locally), the API's ``error`` text,
and its ``name`` and ``request_id`` when the body has them. Messages name the allocation and enterprise
and say what to fix; they never contain the access token. Which HTTP answer or transport failure becomes
which error is decided in one private place, ``airflow_provider_oes._errors``.

Retries by Airflow follow from the class: see the API reference's "Exceptions" section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_oes.models import Allocation
    from airflow_provider_oes.settlement_models import Settlement

__all__ = [
    "AllocationReleasedError",
    "OESAuthenticationError",
    "OESConnectionError",
    "OESError",
    "OESInvalidRequestError",
    "OESNotFoundError",
    "OESPermissionDeniedError",
    "OESRateLimitError",
    "OESResponseError",
    "OESServerError",
    "SettlementFailedError",
    "SettlementRejectedError",
]


class OESError(AirflowException):
    """Base class of every error this provider raises about an OES API call.

    :param message: Human-readable explanation, including what to fix.
    :param status_code: HTTP status of the API's answer; ``None`` when the error was raised locally.
    :param error: The API's ``error`` text, when the body had one.
    :param name: The API's stable error ``name``, when the body had one.
    :param request_id: The API's ``requestId``, to quote to BitGo support.
    :param allocation_id: The allocation the call was about, if any.
    :param enterprise_id: The enterprise the call was made under, if known.
    """

    transient: ClassVar[bool] = False
    """True for errors that may go away on their own (5xx, 429, timeouts): those are retried."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        name: str | None = None,
        request_id: str | None = None,
        allocation_id: str | None = None,
        enterprise_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code  # type: ignore[assignment]  # AirflowException types it HTTPStatus
        self.error = error
        self.name = name
        self.request_id = request_id
        self.allocation_id = allocation_id
        self.enterprise_id = enterprise_id

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments need explicit pickling support (Airflow pickles exceptions between processes).
        return (_rebuild_error, (type(self), self.message, self.__dict__.copy()))


def _rebuild_error(cls: type[OESError], message: str, state: dict[str, Any]) -> OESError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class OESInvalidRequestError(OESError, AirflowFailException):
    """HTTP 400, or a bad allocation id / enterprise id / setting caught locally before any request.

    Permanent: the task fails without retries (``soft_fail=True`` on a sensor skips instead).
    """


class OESAuthenticationError(OESError):
    """HTTP 401: the access token is wrong, expired, or its user is not a member of the enterprise.

    Retried by Airflow (``retries``): each try reads the connection again, so a token rotated in the
    meantime is used by the next try.
    """


class OESPermissionDeniedError(OESError, AirflowFailException):
    """HTTP 403: the enterprise has no OES license, or the token may not read this allocation.

    Permanent: the task fails without retries (``soft_fail=True`` on a sensor skips instead).
    """


class OESNotFoundError(OESError, AirflowFailException):
    """HTTP 404: no such allocation for this client (or it belongs to another client).

    Permanent: the task fails without retries (``soft_fail=True`` on a sensor skips instead).
    """


class OESRateLimitError(OESError):
    """HTTP 429: BitGo's rate limit (360 requests per 60 s per user) was hit.

    :param retry_after: Seconds BitGo asked to wait (``Retry-After``), when it said.
    """

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OESServerError(OESError):
    """HTTP 5xx: BitGo had a problem answering. Transient."""

    transient = True


class OESConnectionError(OESError):
    """The request did not get a complete answer: connect/read timeout or a dropped connection. Transient."""

    transient = True


class OESResponseError(OESError):
    """A 2xx answer whose body is not JSON, not a valid allocation, too large, or not the one asked for.

    Never retried within a check and never read as a status: the response cannot be trusted. Airflow's
    ``retries`` apply (a proxy or load balancer answering garbage may recover).
    """


class AllocationReleasedError(AirflowFailException):
    """The allocation reached ``released``: it will never clear, so the task fails without retries.

    With ``soft_fail=True`` on the sensor the task is skipped instead.

    :param allocation: The parsed allocation, with its ``reason``.
    """

    def __init__(self, allocation: Allocation) -> None:
        self.allocation = allocation
        super().__init__(
            f"{allocation.type} {allocation.id} of {allocation.amount} was released "
            f"(terminal: it will not clear). Reason given by BitGo: {allocation.reason or 'none given'}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.allocation,))


class SettlementRejectedError(AirflowFailException):
    """The settlement was ``rejected`` by BitGo (final: it will never complete), so the task fails without retries.

    With ``soft_fail=True`` on the sensor the task is skipped instead.

    :param settlement: The parsed settlement, with BitGo's ``reason``.
    """

    def __init__(self, settlement: Settlement) -> None:
        self.settlement = settlement
        super().__init__(
            f"settlement {settlement.id} ({settlement.external_id}) was rejected (final: it will not complete). "
            f"Reason given by BitGo: {settlement.reason or 'none given'}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.settlement,))


class SettlementFailedError(AirflowFailException):
    """The settlement is ``failed`` and the sensor was told to fail fast (``fail_on_failed=True``).

    BitGo calls ``failed`` not final (it retries the settlement): by default the sensor keeps waiting instead.

    :param settlement: The parsed settlement, with BitGo's ``reason``.
    """

    def __init__(self, settlement: Settlement) -> None:
        self.settlement = settlement
        super().__init__(
            f"settlement {settlement.id} ({settlement.external_id}) failed and fail_on_failed is set "
            f"(BitGo may still retry it). Reason given by BitGo: {settlement.reason or 'none given'}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.settlement,))
