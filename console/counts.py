"""Order counts by status, kept for a few seconds and refreshed behind the page.

On Firestore the counts are index-backed aggregation queries; on the emulator
each one scans the collection (seconds at 100,000 orders). So the counts are
kept for ``max_age_s`` seconds: a page asking later gets the kept counts at once
while one background refresh counts again, and the next page shows the new ones.
Only the first page ever waits for a count.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

Counter = Callable[[], dict[str, int]]


class OrderCounts:
    """The latest counts, the time they were taken, and at most one refresh at a time."""

    def __init__(
        self, counter: Counter, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Count with ``counter``; counts older than ``max_age_s`` seconds are refreshed.

        ``clock`` gives monotonic seconds (tests pass their own to age the counts).
        """
        self._counter = counter
        self._clock = clock
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._counts: dict[str, int] | None = None
        self._taken_at = 0.0  # clock time of the kept counts
        self.counted_at: dt.datetime | None = None  # wall-clock time of the kept counts
        self._refreshing = False

    def get(self) -> dict[str, int]:
        """Return the kept counts (counting now if there are none); refresh stale ones."""
        with self._lock:
            counts = self._counts
            stale = self._clock() - self._taken_at > self._max_age_s
            start_refresh = counts is not None and stale and not self._refreshing
            if start_refresh:
                self._refreshing = True
        if counts is None:
            return self._count()
        if start_refresh:
            threading.Thread(target=self._refresh, name="console-counts", daemon=True).start()
        return counts

    def _refresh(self) -> None:
        try:
            self._count()
        except Exception:  # the kept counts stay; the next page tries again
            pass
        finally:
            with self._lock:
                self._refreshing = False

    def _count(self) -> dict[str, int]:
        counts = self._counter()
        with self._lock:
            self._counts = counts
            self._taken_at = self._clock()
            self.counted_at = dt.datetime.now(dt.UTC)
        return counts
