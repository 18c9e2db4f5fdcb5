"""Validation of the URLs tasks are sent to, and of the URL parts a queue overrides.

Whatever is accepted here can be sent by the dispatcher's HTTP client, so a task
is never accepted only to fail at every dispatch.
"""

from __future__ import annotations

import ipaddress
import re

from localcloud.tasks.errors import InvalidArgumentError

_NOT_URL_CHAR = re.compile(r"[^\x21-\x7e]")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")
MAX_HOST_LENGTH = 253


def check_url_text(field: str, text: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``text`` is printable ASCII without spaces.

    That is what a URL may hold once percent-encoded (RFC 3986).
    """
    bad = _NOT_URL_CHAR.search(text)
    if bad is not None:
        raise InvalidArgumentError(
            f"{field} has {bad.group()!r} at character {bad.start()}: a URL is printable ASCII "
            "without spaces; percent-encode anything else."
        )


def check_host(field: str, host: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``host`` is an IP address or a DNS name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return
    labels = host.removesuffix(".").split(".")
    if len(host) > MAX_HOST_LENGTH or not all(_HOST_LABEL_RE.fullmatch(x) for x in labels):
        raise InvalidArgumentError(
            f"{field} host '{host}' is not an IP address or a DNS name (labels of 1-63 "
            "letters, digits, hyphens or underscores, at most 253 characters)."
        )
