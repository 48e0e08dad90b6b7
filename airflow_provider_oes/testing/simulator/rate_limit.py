"""
BitGo's rate limit, per access token across every client: at most ``limit`` requests in any sliding
window of ``window`` seconds; beyond it the answer is 429 with ``Retry-After`` (whole seconds).

Only admitted requests fill the window (a client retrying too early is told to wait, not locked out).
Every request presenting a valid token is remembered with its time and whether it was admitted, so
tests can check what the server saw in any window.
"""

from __future__ import annotations

import bisect
import collections
import math
import threading


class TokenRateLimit:
    """Sliding-window log per token (thread-safe); ``limit=None`` admits everything."""

    def __init__(self, limit: int | None = None, window: float = 60.0) -> None:
        self._lock = threading.Lock()
        self.limit = limit
        self.window = window
        self._windows: dict[str, collections.deque[float]] = {}
        self._seen: dict[str, list[tuple[float, bool]]] = {}

    def configure(self, limit: int | None, window: float) -> None:
        """Set the limit (None: unlimited) and the window in seconds; the current windows are kept."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, not {limit!r}")
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, not {window!r}")
        with self._lock:
            self.limit, self.window = limit, float(window)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._seen.clear()

    def admit(self, token: str, now: float) -> int | None:
        """
        Count a request of ``token`` at ``now`` (monotonic); return None if admitted, else the
        ``Retry-After`` seconds after which the oldest request of the window leaves it.
        """
        with self._lock:
            window = self._windows.setdefault(token, collections.deque())
            while window and window[0] <= now - self.window:
                window.popleft()
            admitted = self.limit is None or len(window) < self.limit
            self._seen.setdefault(token, []).append((now, admitted))
            if admitted:
                window.append(now)
                return None
            return max(1, math.ceil(window[0] + self.window - now))

    def seen(self, token: str) -> list[tuple[float, bool]]:
        """Every request of ``token``: ``(time.monotonic(), admitted)``, oldest first."""
        with self._lock:
            return list(self._seen.get(token, ()))


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) that fall in any window ``[t, t + window)``."""
    best = 0
    for index, start in enumerate(times):
        best = max(best, bisect.bisect_left(times, start + window, index) - index)
    return best
