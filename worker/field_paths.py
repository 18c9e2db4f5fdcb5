"""Field paths: parsing ``update()`` keys, quoting and rendering paths, describing them.

The rules are the high-level ``google.cloud.firestore`` client's: ``update()`` keys
are dotted paths (backticks quote a name with a dot), ``create``/``set`` keys are
plain names, and every name that is not a simple identifier is backtick-quoted in
masks and transforms. Update paths given twice, or one inside another, are refused
as that client refuses them.

A :data:`FieldPath` is the path of a value while it is encoded: field names, and
indexes inside arrays (which only messages need); the field names alone, as a
tuple of str, are what masks and transforms name.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_SIMPLE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_PATH_TOKEN = re.compile(r"(?P<simple>[_a-zA-Z][_a-zA-Z0-9]*)|(?P<quoted>`(?:\\`|[^`])*?`)|\.")
_LEADING_ALPHA_INVALID = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*[~*/\[\]]")

FieldPath = tuple[str | int, ...]  # field names, and indexes inside arrays (for messages)


def child_path(prefix: FieldPath, key: Any) -> FieldPath:
    """Return the path of the field ``key`` of the map at ``prefix``, checking the key."""
    if not isinstance(key, str):
        raise TypeError(
            f"cannot encode a key of {describe(prefix)}: {key!r} is a {type(key).__name__}, "
            "not a str"
        )
    if not key:
        raise ValueError(f"cannot encode a key of {describe(prefix)}: field names are not empty")
    return (*prefix, key)


def field_names(path: FieldPath) -> tuple[str, ...]:
    """Return ``path`` as field names (it has no array index: sentinels are not in arrays)."""
    return tuple(str(name) for name in path)


@functools.lru_cache(maxsize=4096)
def render(names: tuple[str, ...]) -> str:
    """Render field names as a field path, backtick-quoting those that are not identifiers.

    As the official client's ``render_field_path``: inside backticks, a backslash
    and a backtick are escaped with a backslash.
    """
    return ".".join(_quote(name) for name in names)


def _quote(name: str) -> str:
    if _SIMPLE_NAME.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def describe(path: FieldPath) -> str:
    """Render ``path`` for a message: field names as a field path, array indexes as [i]."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + _quote(part)
    return repr(text) if text else "(the document)"


def parse_update_key(key: Any) -> tuple[str, ...]:
    """Split an ``update()`` key into field names, as the official ``FieldPath.from_string``."""
    if not isinstance(key, str):
        raise TypeError(f"an update key must be a str field path, not {type(key).__name__}")
    return _split_update_key(key)


@functools.lru_cache(maxsize=4096)
def _split_update_key(key: str) -> tuple[str, ...]:
    try:
        return _parse_quoted_path(key)
    except ValueError:
        pass  # not in the quoted syntax: split on dots
    names = key.split(".")
    for name in names:
        if not name:
            raise ValueError(f"field path {key!r} has an empty name")
        if _LEADING_ALPHA_INVALID.match(name):
            raise ValueError(f"field path {key!r}: {name!r} has one of ~*/[] after a name")
    return tuple(names)


def _parse_quoted_path(text: str) -> tuple[str, ...]:
    """Parse a field path in the API's syntax (dots, backtick-quoted names); ValueError if not."""
    text = text.strip()
    names: list[str] = []
    position, want_dot = 0, False
    while position < len(text):
        token = _PATH_TOKEN.match(text, position)
        if token is None:
            raise ValueError(f"{text!r} is not a field path")
        position = token.end()
        if want_dot != (token.group() == "."):
            raise ValueError(f"{text!r} is not a field path")
        want_dot = not want_dot
        if token.lastgroup == "quoted":
            names.append(token.group()[1:-1].replace("\\`", "`").replace("\\\\", "\\"))
        elif token.lastgroup == "simple":
            names.append(token.group())
    if not want_dot or not all(names):
        raise ValueError(f"{text!r} is not a field path")
    return tuple(names)


def refuse_overlaps(paths: list[tuple[str, ...]]) -> None:
    """Refuse update paths given twice, or one inside another (as the official client)."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise ValueError(f"a field path is given twice in {[render(p) for p in paths]}")
    for names in paths:
        for end in range(1, len(names)):
            if names[:end] in seen:
                raise ValueError(
                    f"conflicting field paths: {render(names[:end])} and {render(names)}"
                )
