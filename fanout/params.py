"""Command-line value types: durations (``90s``, ``15m``, ``2h``, ``1d``) and instants."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A duration in seconds, written as a number with an optional unit s, m, h or d."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Return the duration in seconds (float)."""
        if isinstance(value, int | float):
            return float(value)
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h or 1d", param, ctx)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
        if seconds <= 0:
            self.fail(f"{value!r} must be longer than 0 seconds", param, ctx)
        return seconds


class Instant(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or date-time; without a time zone it is taken as UTC."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Return an aware :class:`datetime.datetime`."""
        if isinstance(value, dt.datetime):
            parsed = value
        else:
            try:
                parsed = dt.datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date or time; write e.g. 2026-11-01 "
                    "or 2026-11-01T08:00:00+01:00",
                    param,
                    ctx,
                )
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
