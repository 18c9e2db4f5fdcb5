"""Page tokens and page sizes of ListQueues and ListTasks.

A page token is the URL-safe base64 of the last name on the previous page, so
paging is stable while resources are added or removed.
"""

from __future__ import annotations

import base64

from localcloud.tasks.errors import InvalidArgumentError

MAX_PAGE_SIZE = 1000


def encode_page_token(last_name: str) -> str:
    """Return the opaque page token that continues after ``last_name``."""
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def decode_page_token(token: str) -> str:
    """Return the name a :func:`encode_page_token` token continues after ('' for none)."""
    if not token:
        return ""
    try:
        name = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        name = None
    if name is None or encode_page_token(name) != token:  # only tokens this module wrote
        shown = token if len(token) <= 100 else f"{token[:100]}..."
        raise InvalidArgumentError(
            f"Invalid page_token '{shown}': pass the next_page_token of the previous page."
        )
    return name


def page_size(size: int) -> int:
    """Return the page size to use for a requested ``size`` (0 = the maximum, 1000)."""
    if size < 0:
        raise InvalidArgumentError(f"page_size must not be negative, got {size}.")
    return min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
