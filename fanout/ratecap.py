"""A cap on task creations per second: the token bucket under the pacing of :mod:`fanout.ramp`.

The ramp sets its rate as it grows (:meth:`CreationRateCap.set_rate`); a fixed
``FANOUT_MAX_CREATES_PER_SECOND`` keeps it at one rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CreationRateCap:
    """A token bucket: ``rate_per_s`` creations per second, bursts up to one second's worth."""

    def __init__(
        self,
        rate_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Allow ``rate_per_s`` creations per second (0 or less: no cap)."""
        self.rate_per_s = rate_per_s
        self._capacity = max(rate_per_s, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def set_rate(self, rate_per_s: float) -> None:
        """Change the rate (creations per second); the tokens earned so far are kept."""
        with self._lock:
            if rate_per_s == self.rate_per_s:
                return
            self._refill(self._clock())
            self.rate_per_s = rate_per_s
            self._capacity = max(rate_per_s, 1.0)

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last stamp (called under the lock)."""
        elapsed_s = now - self._stamp
        self._tokens = min(self._capacity, self._tokens + elapsed_s * max(self.rate_per_s, 0.0))
        self._stamp = now

    def take(self, count: int) -> None:
        """Block until ``count`` creations fit under the cap.

        Each caller takes its tokens at once, going into debt if need be, and
        sleeps the debt off outside the lock, so callers are served in turn.
        """
        if self.rate_per_s <= 0:
            return
        with self._lock:
            self._refill(self._clock())
            self._tokens -= count
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate_per_s)
