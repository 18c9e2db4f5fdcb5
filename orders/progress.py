"""A progress line: a live bar on a terminal, plain periodic lines otherwise.

Used by the command-line tools (``fanout backfill``, ``localcloud demo``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
PLAIN_EVERY_S = 5.0  # seconds between lines when not on a terminal


class Progress:
    """Shows ``done`` of ``total`` with a rate (per second) and an ETA on ``stream``."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        """Track ``total`` items named ``label`` on ``stream`` (default: stderr)."""
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._started = time.monotonic()
        self._last_plain = 0.0

    def update(self, done: int) -> None:
        """Redraw (terminal) or print a line every few seconds (otherwise)."""
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        filled = min(BAR_WIDTH, int(BAR_WIDTH * done / self.total)) if self.total else BAR_WIDTH
        eta = f"ETA {(self.total - done) / rate:6.1f} s" if rate > 0 and done < self.total else ""
        text = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {self.label} "
            f"{elapsed:6.1f} s {rate:8.1f}/s {eta}"
        ).rstrip()
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")  # erase what a longer line left
        elif elapsed - self._last_plain >= PLAIN_EVERY_S or done >= self.total:
            self._last_plain = elapsed
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
