"""The wall clock the services read, in UTC, as one injectable function."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]  # returns the current time, timezone-aware UTC


def utc_now() -> dt.datetime:
    """Return the current time in UTC (timezone-aware): the default :data:`Clock`."""
    return dt.datetime.now(dt.UTC)
