"""Validation of the HTTP headers of tasks and of queue-level header overrides."""

from __future__ import annotations

import functools
import re

from localcloud.tasks.errors import InvalidArgumentError

MAX_HEADERS_BYTES = 80 * 1024  # headers of one task, names and values, in bytes
_BAD_VALUE_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_HEADER_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def check_header_value(key: str, value: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` can be sent as header ``key``.

    It must be Latin-1 (what HTTP/1.1 carries), without control characters but
    tab, and not start with white space (the HTTP client refuses that).
    """
    bad = _BAD_VALUE_CHAR.search(value)
    if bad is not None:
        raise InvalidArgumentError(
            f"HTTP header {key!r} has {bad.group()!r} at character {bad.start()} of its value: "
            "values must be Latin-1 text without control characters (percent-encode the rest)."
        )
    if value[:1].isspace():
        raise InvalidArgumentError(f"HTTP header {key!r} has a value starting with white space.")


def check_headers(headers: dict[str, str]) -> None:
    """Raise :class:`InvalidArgumentError` for a bad header name or value, or over 80 KB."""
    _check_header_items(tuple(headers.items()))


@functools.lru_cache(maxsize=64)  # the tasks of one fan-out share their headers
def _check_header_items(items: tuple[tuple[str, str], ...]) -> None:
    total = 0
    for key, value in items:
        if not key or not _HEADER_NAME_CHARS.issuperset(key):
            raise InvalidArgumentError(f"Invalid HTTP header name {key!r}.")
        check_header_value(key, value)
        total += len(key.encode()) + len(value.encode())
    if total > MAX_HEADERS_BYTES:
        raise InvalidArgumentError(
            f"HTTP headers are {total} bytes; the maximum is {MAX_HEADERS_BYTES} bytes."
        )
