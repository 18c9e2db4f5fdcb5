"""Python values into raw protobuf ``Value`` messages and back, in the client's vocabulary.

The high-level ``google.cloud.firestore`` client spends most of a request's client
CPU converting between Python and protobuf (proto-plus marshalling, its
``DocumentExtractor``, deep copies of every snapshot). This module fills the raw
protobuf messages of ``google.cloud.firestore_v1.types`` (``Type.pb()``) in place
instead, and reads them back directly.

It speaks that client's vocabulary: :data:`SERVER_TIMESTAMP`, :class:`Increment`
(and ``Maximum``, ``Minimum``, ``ArrayUnion``, ``ArrayRemove``) and
:data:`DELETE_FIELD` are that library's own sentinels, re-exported here; a
sentinel or transform in the data becomes a field transform of its write, at its
field path. Values decode to what its ``to_dict()`` gives (timestamps as tz-aware
UTC ``DatetimeWithNanoseconds``, geo points as :class:`GeoPoint`), except
references, which decode to :class:`Reference`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import types
from google.protobuf import timestamp_pb2

from worker.field_paths import FieldPath, child_path, describe, field_names, render

SERVER_TIMESTAMP = firestore.SERVER_TIMESTAMP  # the high-level client's sentinels, re-exported
DELETE_FIELD = firestore.DELETE_FIELD
Increment = firestore.Increment
Maximum = firestore.Maximum
Minimum = firestore.Minimum
ArrayUnion = firestore.ArrayUnion
ArrayRemove = firestore.ArrayRemove
GeoPoint = firestore.GeoPoint

_REQUEST_TIME = int(types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The types of the sentinels (DELETE_FIELD's too) and transforms: never plain values.
SPECIAL_TYPES = (type(SERVER_TIMESTAMP), Increment, Maximum, Minimum, ArrayUnion, ArrayRemove)
Transform = tuple[tuple[str, ...], Any]  # a field path and its sentinel or transform


@dataclass(frozen=True)
class Reference:
    """A reference value: the full resource name of the document it points at."""

    name: str  # projects/{p}/databases/{d}/documents/{collection}/{id}...


# --- encoding: Python values into raw protobuf, in place ------------------------------


def encode_map(
    fields: Any,
    data: Mapping[str, Any],
    prefix: FieldPath,
    transforms: list[Transform] | None,
    context: str,
) -> None:
    """Encode ``data`` into the protobuf map ``fields``; sentinels go to ``transforms``.

    ``transforms`` is None inside arrays and transform operands, where sentinels
    are refused; ``context`` names the operation for ``DELETE_FIELD``'s refusal.
    """
    for key, value in data.items():
        path = child_path(prefix, key)
        if isinstance(value, SPECIAL_TYPES):
            _special(path, value, transforms, context)
        else:
            encode_value(fields[key], value, path, transforms, context)


def encode_merge(
    fields: Any,
    data: Mapping[str, Any],
    prefix: FieldPath,
    mask: Any,
    transforms: list[Transform],
) -> None:
    """Encode ``data`` for a merge: its leaves into ``fields`` and their paths into ``mask``."""
    for key, value in data.items():
        path = child_path(prefix, key)
        if value is DELETE_FIELD:
            mask.append(render(field_names(path)))
        elif isinstance(value, SPECIAL_TYPES):
            transforms.append((field_names(path), value))
        elif isinstance(value, Mapping) and value:
            nested = fields[key].map_value.fields
            encode_merge(nested, value, path, mask, transforms)
            if not nested:  # only transforms and deletes below: no data field here
                del fields[key]
        else:
            mask.append(render(field_names(path)))
            encode_value(fields[key], value, path, transforms, "set with merge")


def encode_value(
    target: Any, value: Any, path: FieldPath, transforms: list[Transform] | None, context: str
) -> None:
    """Encode ``value`` into the raw ``Value`` message ``target``."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is int:
        _set_integer(target, value, path)
    elif kind is dict:
        map_value = target.map_value
        map_value.SetInParent()  # an empty map is still a map
        encode_map(map_value.fields, value, path, transforms, context)
    elif value is None:
        target.null_value = 0
    elif kind is bool:
        target.boolean_value = value
    elif kind is float:
        target.double_value = value
    elif isinstance(value, dt.datetime):
        set_timestamp(target.timestamp_value, value)
    else:
        _encode_other(target, value, path, transforms, context)


def _encode_other(
    target: Any, value: Any, path: FieldPath, transforms: list[Transform] | None, context: str
) -> None:
    """Encode the less common types, and subclasses of the common ones."""
    if isinstance(value, bool):
        target.boolean_value = value
    elif isinstance(value, int):
        _set_integer(target, int(value), path)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = str(value)
    elif isinstance(value, bytes | bytearray):
        target.bytes_value = bytes(value)
    elif isinstance(value, Mapping):
        map_value = target.map_value
        map_value.SetInParent()
        encode_map(map_value.fields, value, path, transforms, context)
    elif isinstance(value, list | tuple | set | frozenset):
        _encode_array(target.array_value, value, path)
    elif isinstance(value, GeoPoint):
        target.geo_point_value.latitude = value.latitude
        target.geo_point_value.longitude = value.longitude
    elif isinstance(value, Reference):
        target.reference_value = value.name
    elif isinstance(value, SPECIAL_TYPES):
        _special(path, value, None, context)
    else:
        kind = type(value)
        raise TypeError(
            f"cannot encode field {describe(path)}: {kind.__module__}.{kind.__qualname__} "
            "is not a Firestore value type"
        )


def _encode_array(target: Any, values: Iterable[Any], path: FieldPath) -> None:
    """Encode ``values`` into the raw ``ArrayValue`` message ``target``."""
    target.SetInParent()  # an empty array is still an array
    elements = target.values
    for index, value in enumerate(values):
        encode_value(elements.add(), value, (*path, index), None, "an array")


def _set_integer(target: Any, value: int, path: FieldPath) -> None:
    try:
        target.integer_value = value
    except ValueError:
        raise ValueError(
            f"cannot encode field {describe(path)}: {value} is out of the 64-bit integer range"
        ) from None


def set_timestamp(target: Any, value: Any) -> None:
    """Set the raw ``Timestamp`` ``target`` from a datetime (naive: UTC) or a Timestamp."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = aware - _EPOCH
        nanos = value.nanosecond if isinstance(value, DatetimeWithNanoseconds) else 0
        target.seconds = delta.days * 86_400 + delta.seconds
        target.nanos = nanos or delta.microseconds * 1000
    elif isinstance(value, timestamp_pb2.Timestamp):
        target.CopyFrom(value)
    else:
        raise TypeError(
            f"a timestamp must be a protobuf Timestamp or a datetime, not {type(value).__name__}"
        )


def _special(path: FieldPath, value: Any, transforms: list[Transform] | None, context: str) -> None:
    """Record the sentinel or transform ``value`` at ``path``, or refuse it there."""
    if transforms is None:
        raise TypeError(
            f"cannot encode field {describe(path)}: {value!r} cannot be inside {context}"
        )
    if value is DELETE_FIELD:
        raise ValueError(f"DELETE_FIELD at {describe(path)} is not allowed in {context}")
    transforms.append((field_names(path), value))


def add_transforms(write: Any, transforms: list[Transform]) -> None:
    """Add ``transforms`` to the raw ``Write`` as its update transforms, in order."""
    for names, spec in transforms:
        transform = write.update_transforms.add()
        transform.field_path = render(names)
        if spec is SERVER_TIMESTAMP:
            transform.set_to_server_value = _REQUEST_TIME
        elif isinstance(spec, Increment):
            encode_value(transform.increment, spec.value, names, None, "a transform")
        elif isinstance(spec, Maximum):
            encode_value(transform.maximum, spec.value, names, None, "a transform")
        elif isinstance(spec, Minimum):
            encode_value(transform.minimum, spec.value, names, None, "a transform")
        elif isinstance(spec, ArrayUnion):
            _encode_array(transform.append_missing_elements, spec.values, names)
        elif isinstance(spec, ArrayRemove):
            _encode_array(transform.remove_all_from_array, spec.values, names)
        else:  # another sentinel of the official client (none exists today)
            raise TypeError(f"field {describe(names)}: {spec!r} is not supported here")


# --- decoding: raw protobuf into Python values ----------------------------------------


def decode(value: Any) -> Any:
    """Return the Python value of a raw ``Value`` message, as the official client does."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "integer_value":
        return value.integer_value
    if kind == "map_value":
        return {key: decode(each) for key, each in value.map_value.fields.items()}
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(value.timestamp_value)
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "null_value":
        return None
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [decode(each) for each in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "geo_point_value":
        return GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    if kind == "reference_value":
        return Reference(value.reference_value)
    raise ValueError(f"cannot decode a Firestore value of kind {kind}")
