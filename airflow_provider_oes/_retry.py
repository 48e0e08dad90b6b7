"""The one retry policy for OES API calls, used by the sync hook and the async trigger client.

Transient failures (HTTP 5xx, 429, timeouts, dropped connections) are retried with exponential backoff
and jitter; a 429's ``Retry-After`` is honoured up to ``max_wait``. Permanent failures (400, 401, 403,
404, and bodies that fail validation) are never retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from airflow_provider_oes.exceptions import OESError, OESRateLimitError
from airflow_provider_oes.get_provider_info import EXTRA_FIELDS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import tenacity

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: they may go away without anyone changing anything."""
    return isinstance(exc, OESError) and exc.transient


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one API call.

    :param max_retries: Retries after the first attempt (0 = try once).
    :param initial_wait: First backoff, in seconds; it doubles on each retry.
    :param max_wait: Cap of one backoff and of an honoured ``Retry-After``, in seconds.
    """

    max_retries: int = EXTRA_FIELDS["max_retries"].default
    initial_wait: float = 0.5
    max_wait: float = EXTRA_FIELDS["retry_max_wait"].default

    def wait_seconds(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based) after ``exc``."""
        if isinstance(exc, OESRateLimitError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.initial_wait * (2 ** (attempt - 1)))
        # "Equal jitter": at least half the backoff, so retries of many clients spread out but still wait.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _tenacity_kwargs(self) -> dict[str, object]:
        import tenacity

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number, exc)

        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "retry": tenacity.retry_if_exception(is_transient),
            "wait": wait,
            "reraise": True,
        }

    def call(self, fn: Callable[[], T], sleep: Callable[[float], None] | None = None) -> T:
        """Run ``fn`` with retries; re-raise the last error when retries run out."""
        # The first attempt runs outside tenacity: a check that is answered at once (nearly all of them)
        # should not pay for the retry machinery. tenacity then replays that failure as its attempt 1,
        # so attempts, waits and stop rules are exactly those of a plain tenacity loop.
        try:
            return fn()
        except Exception as exc:
            if self.max_retries == 0 or not is_transient(exc):
                raise
            first_failure = exc

        import tenacity

        pending = [first_failure]

        def attempt() -> T:
            if pending:
                raise pending.pop()
            return fn()

        kwargs = self._tenacity_kwargs()
        if sleep is not None:
            kwargs["sleep"] = sleep
        return tenacity.Retrying(**kwargs)(attempt)  # type: ignore[arg-type]

    async def acall(self, fn: Callable[[], Awaitable[T]], sleep: Callable[[float], Awaitable[None]] | None = None) -> T:
        """Async twin of :meth:`call` for the trigger's client."""
        try:
            return await fn()
        except Exception as exc:
            if self.max_retries == 0 or not is_transient(exc):
                raise
            first_failure = exc

        import tenacity

        pending = [first_failure]

        async def attempt() -> T:
            if pending:
                raise pending.pop()
            return await fn()

        kwargs = self._tenacity_kwargs()
        if sleep is not None:
            kwargs["sleep"] = sleep
        retrying = tenacity.AsyncRetrying(**kwargs)  # type: ignore[arg-type]
        return await retrying(attempt)
