"""Protobuf ``Timestamp`` and ``Duration`` messages: checks, and conversion to and from seconds."""

from __future__ import annotations

from typing import Any

from localcloud.tasks.errors import InvalidArgumentError

MIN_TIMESTAMP_S = -62_135_596_800  # 0001-01-01T00:00:00Z, seconds since the epoch
MAX_TIMESTAMP_S = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_S = 315_576_000_000  # 10,000 years, a Duration's range in seconds
MAX_NANOS = 999_999_999


def timestamp_s(ts: Any) -> float:
    """Return a ``google.protobuf.Timestamp`` as seconds since the epoch."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def duration_s(d: Any) -> float:
    """Return a ``google.protobuf.Duration`` in seconds."""
    return float(d.seconds) + float(d.nanos) / 1e9


def check_timestamp(field: str, ts: Any) -> None:
    """Raise :class:`InvalidArgumentError` naming ``field`` unless ``ts`` is a valid Timestamp.

    Valid: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos in
    [0, 999999999]; anything else cannot be written back as JSON (RFC 3339).
    """
    if not MIN_TIMESTAMP_S <= ts.seconds <= MAX_TIMESTAMP_S:
        raise InvalidArgumentError(
            f"{field}.seconds {ts.seconds} is outside 0001-01-01 to 9999-12-31 "
            f"([{MIN_TIMESTAMP_S}, {MAX_TIMESTAMP_S}])."
        )
    if not 0 <= ts.nanos <= MAX_NANOS:
        raise InvalidArgumentError(f"{field}.nanos {ts.nanos} must be in [0, {MAX_NANOS}].")


def check_duration(field: str, d: Any) -> None:
    """Raise :class:`InvalidArgumentError` naming ``field`` unless ``d`` is a valid Duration.

    Valid: at most 10,000 years either way, nanos in [-999999999, 999999999] of
    the same sign as seconds.
    """
    if abs(d.seconds) > MAX_DURATION_S:
        raise InvalidArgumentError(
            f"{field}.seconds {d.seconds} is outside [-{MAX_DURATION_S}, {MAX_DURATION_S}]."
        )
    if abs(d.nanos) > MAX_NANOS or (d.seconds and d.nanos and (d.seconds > 0) != (d.nanos > 0)):
        raise InvalidArgumentError(
            f"{field}.nanos {d.nanos} must be in [-{MAX_NANOS}, {MAX_NANOS}] and have the "
            "sign of seconds."
        )


def set_timestamp(ts: Any, seconds: float) -> None:
    """Set a ``Timestamp`` to ``seconds`` since the epoch, truncated to microseconds.

    Times beyond a Timestamp's range (a retry backed off past year 9999) are
    clamped to it, so every task can always be read back.
    """
    seconds = min(max(seconds, MIN_TIMESTAMP_S), MAX_TIMESTAMP_S)
    micros = int(seconds * 1_000_000)
    ts.seconds, rest = divmod(micros, 1_000_000)
    ts.nanos = rest * 1000


def set_duration(d: Any, seconds: float) -> None:
    """Set a ``Duration`` to ``seconds``, truncated to microseconds."""
    micros = round(seconds * 1_000_000)
    d.seconds, rest = divmod(micros, 1_000_000)
    d.nanos = rest * 1000
