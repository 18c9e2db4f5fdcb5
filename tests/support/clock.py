"""A clock that moves only when a test moves it, for code that takes a ``clock``."""

from __future__ import annotations

import datetime as dt
import time


class FakeClock:
    """Seconds (epoch or monotonic, as the code under test reads them); starts at ``start_s``."""

    def __init__(self, start_s: float | None = None) -> None:
        self.now_s = time.time() if start_s is None else start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds

    def utc(self) -> dt.datetime:
        """The same instant as an aware UTC datetime (for code that takes a datetime clock)."""
        return dt.datetime.fromtimestamp(self.now_s, dt.UTC)
