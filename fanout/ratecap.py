"""An optional cap on task creations per second, for ramping up a cold queue.

Google's guidance for a new or idle queue is to start at no more than 500
operations per second and grow by at most 50% every 5 minutes (the "500/50/5"
rule); set ``FANOUT_MAX_CREATES_PER_SECOND`` to stay under it. Off (0) by default.
"""

from __future__ import annotations

import threading
import time


class CreationRateCap:
    """A token bucket: ``rate_per_s`` creations per second, bursts up to one second's worth."""

    def __init__(self, rate_per_s: float) -> None:
        """Allow ``rate_per_s`` creations per second (0 or less: no cap)."""
        self.rate_per_s = rate_per_s
        self._capacity = max(rate_per_s, 1.0)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        """Block until ``count`` creations fit under the cap."""
        if self.rate_per_s <= 0:
            return
        remaining = float(count)
        while remaining > 0:
            with self._lock:
                now = time.monotonic()
                elapsed = now - self._stamp
                self._tokens = min(self._capacity, self._tokens + elapsed * self.rate_per_s)
                self._stamp = now
                granted = min(remaining, self._tokens)
                self._tokens -= granted
                remaining -= granted
                wait_s = min(remaining, self._capacity) / self.rate_per_s
            if remaining > 0:
                time.sleep(wait_s)
