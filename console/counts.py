"""Order counts by status, kept for a few seconds and refreshed behind the page.

On Firestore the counts are index-backed aggregation queries; on the emulator
each one scans the collection (seconds at 100,000 orders). So the counts are
kept for ``max_age_s`` seconds (:class:`console.kept.KeptValue`): a page asking
later gets the kept counts at once while one background refresh counts again,
and the next page shows the new ones. Only the first page ever waits for a count.
"""

from __future__ import annotations

import datetime as dt

from console.kept import KeptValue


class OrderCounts(KeptValue[dict[str, int]]):
    """The latest order counts by status, and when they were taken."""

    @property
    def counted_at(self) -> dt.datetime | None:
        """The wall-clock time of the kept counts (None before the first count)."""
        return self.read_at
