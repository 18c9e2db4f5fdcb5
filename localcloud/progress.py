"""A progress line: a live bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
PLAIN_EVERY_S = 5.0  # seconds between lines when not on a terminal


class Progress:
    """Shows ``done`` of ``total`` with a rate (per second) on ``stream``."""

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
        filled = int(BAR_WIDTH * done / self.total) if self.total else BAR_WIDTH
        text = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {self.label} "
            f"{elapsed:6.1f} s {rate:8.1f}/s"
        )
        if self.live:
            self.stream.write("\r" + text)
        elif elapsed - self._last_plain >= PLAIN_EVERY_S or done >= self.total:
            self._last_plain = elapsed
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
