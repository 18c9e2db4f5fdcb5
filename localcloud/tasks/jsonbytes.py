"""Strict base64 for the ``bytes`` fields of REST requests.

``google.protobuf.json_format`` decodes ``bytes`` fields with a base64 decoder
that silently drops characters outside the alphabet, so ``"body": "not base64!"``
would become some other body. Google's JSON APIs answer 400 instead; so does
:func:`check_bytes_fields`, before the request is parsed. Standard and URL-safe
alphabets are both accepted, padded or not, as ``json_format`` writes and reads.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from localcloud.tasks.errors import InvalidArgumentError

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*")


def check_bytes_fields(document: Any, descriptor: Descriptor, where: str) -> None:
    """Raise :class:`InvalidArgumentError` naming the field if a ``bytes`` value is not base64.

    ``document`` is the JSON request for the message ``descriptor``; values of the
    wrong JSON type are left for ``json_format`` to report.
    """
    if not isinstance(document, dict):
        return
    for key, value in document.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            continue
        path = f"{where}.{key}"
        values = value if field.is_repeated and isinstance(value, list) else [value]
        for item in values:
            if field.type == FieldDescriptor.TYPE_BYTES:
                _check_base64(item, path)
            elif field.type == FieldDescriptor.TYPE_MESSAGE and not _is_map(field):
                check_bytes_fields(item, field.message_type, path)


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type.GetOptions().map_entry)


def _check_base64(value: Any, path: str) -> None:
    if not isinstance(value, str):
        return
    data = value.rstrip("=")
    padding = len(value) - len(data)
    valid = (
        _BASE64.fullmatch(data) is not None
        and len(data) % 4 != 1
        and padding <= 2
        and (padding == 0 or len(value) % 4 == 0)
    )
    if not valid:
        raise InvalidArgumentError(
            f"Invalid value at '{path}': not base64 (standard or URL-safe alphabet)."
        )
