"""A clock that moves only when a test (or a ``sleep`` it passes) moves it."""

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

    sleep = advance  # for code that takes a ``sleep`` too: sleeping moves the clock

    def utc(self) -> dt.datetime:
        """The same instant as an aware UTC datetime (for code that takes a datetime clock)."""
        return dt.datetime.fromtimestamp(self.now_s, dt.UTC)
