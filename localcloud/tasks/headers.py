"""Validation of the HTTP headers of tasks and of queue-level header overrides."""

from __future__ import annotations

from localcloud.tasks.errors import InvalidArgumentError

MAX_HEADERS_BYTES = 80 * 1024  # headers of one task, names and values, in bytes
_HEADER_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def check_headers(headers: dict[str, str]) -> None:
    """Raise :class:`InvalidArgumentError` for a bad header name or value, or over 80 KB."""
    total = 0
    for key, value in headers.items():
        if not key or not _HEADER_NAME_CHARS.issuperset(key):
            raise InvalidArgumentError(f"Invalid HTTP header name {key!r}.")
        if "\r" in value or "\n" in value or "\0" in value:
            raise InvalidArgumentError(f"HTTP header {key!r} has a line break or NUL in its value.")
        total += len(key.encode()) + len(value.encode())
    if total > MAX_HEADERS_BYTES:
        raise InvalidArgumentError(
            f"HTTP headers are {total} bytes; the maximum is {MAX_HEADERS_BYTES} bytes."
        )
