"""A value read from a slow or remote source, kept for a while and refreshed behind the page.

A page asking for a kept value that is older than ``max_age_s`` seconds gets
it at once while one background refresh reads it again; the next page shows
the new one. Only the first page ever waits for a read. A failed refresh keeps
the old value; the next stale request tries again.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeptValue(Generic[T]):
    """The latest value read, the time it was read, and at most one refresh at a time."""

    def __init__(
        self, read: Callable[[], T], max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Read with ``read``; values older than ``max_age_s`` seconds are refreshed.

        ``clock`` gives monotonic seconds (tests pass their own to age the value).
        """
        self._read = read
        self._clock = clock
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._has_value = False
        self._taken_at = 0.0  # clock time of the kept value
        self.read_at: dt.datetime | None = None  # wall-clock time of the kept value
        self._refreshing = False

    def get(self) -> T:
        """Return the kept value (reading it now if there is none); refresh a stale one."""
        with self._lock:
            value, has_value = self._value, self._has_value
            stale = self._clock() - self._taken_at > self._max_age_s
            start_refresh = has_value and stale and not self._refreshing
            if start_refresh:
                self._refreshing = True
        if not has_value:
            return self._take()
        if start_refresh:
            threading.Thread(target=self._refresh, name="console-refresh", daemon=True).start()
        return value  # type: ignore[return-value]  # set whenever has_value is

    def _refresh(self) -> None:
        try:
            self._take()
        except Exception:  # the kept value stays; the next page tries again
            pass
        finally:
            with self._lock:
                self._refreshing = False

    def _take(self) -> T:
        value = self._read()
        with self._lock:
            self._value, self._has_value = value, True
            self._taken_at = self._clock()
            self.read_at = dt.datetime.now(dt.UTC)
        return value
