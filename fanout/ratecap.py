"""An optional cap on task creations per second, for ramping up a cold queue.

Google's guidance for a new or idle queue is to start at no more than 500
operations per second and grow by at most 50% every 5 minutes (the "500/50/5"
rule); set ``FANOUT_MAX_CREATES_PER_SECOND`` to stay under it. Off (0) by default.
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

    def take(self, count: int) -> None:
        """Block until ``count`` creations fit under the cap.

        Each caller takes its tokens at once, going into debt if need be, and
        sleeps the debt off outside the lock, so callers are served in turn.
        """
        if self.rate_per_s <= 0:
            return
        with self._lock:
            now = self._clock()
            elapsed_s = now - self._stamp
            self._tokens = min(self._capacity, self._tokens + elapsed_s * self.rate_per_s)
            self._stamp = now
            self._tokens -= count
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate_per_s)
