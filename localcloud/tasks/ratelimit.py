"""Token bucket of a queue's ``RateLimits`` (pure: the caller passes the clock)."""

from __future__ import annotations

import math

DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
MAX_CONCURRENT_DISPATCHES = 5000
MAX_BURST_SIZE = 500


def burst_size_for_rate(max_dispatches_per_second: float) -> int:
    """Return the ``max_burst_size`` (tokens) the emulator derives from a rate (per second).

    ``max_burst_size`` is output only in the real API. The rule here is
    ``ceil(rate / 5)``, at least 1 and at most 500: the bucket holds one fifth of a
    second of dispatches, which gives Google's documented default of 100 at the
    default 500 dispatches per second.
    """
    return max(1, min(MAX_BURST_SIZE, math.ceil(max_dispatches_per_second / 5.0)))


class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate_per_s`` tokens per second.

    It starts full. Not thread-safe; the owning dispatch loop serialises access.
    Times are monotonic seconds supplied by the caller.
    """

    def __init__(self, rate_per_s: float, capacity: int, now_s: float) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = float(capacity)
        self._updated_s = now_s

    def available(self, now_s: float) -> int:
        """Refill up to ``now_s`` and return the number of whole tokens available."""
        elapsed = now_s - self._updated_s
        if elapsed > 0:
            self._tokens = min(float(self.capacity), self._tokens + elapsed * self.rate_per_s)
            self._updated_s = now_s
        return int(self._tokens + 1e-9)

    def retune(self, rate_per_s: float, capacity: int, now_s: float) -> None:
        """Refill up to ``now_s`` at the old rate; from then on ``rate_per_s`` into ``capacity``."""
        self.available(now_s)
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = min(self._tokens, float(capacity))

    def take(self, count: int) -> None:
        """Remove ``count`` tokens (the caller checked :meth:`available` first)."""
        self._tokens -= count

    def seconds_until_token(self) -> float:
        """Seconds until one whole token is available (0 when one already is)."""
        missing = 1.0 - self._tokens
        return max(0.0, missing / self.rate_per_s)
