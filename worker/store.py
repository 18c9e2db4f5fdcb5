"""Firestore reads and atomic commits on raw protobuf, for the worker's hot path.

The high-level ``google.cloud.firestore`` client spends most of a request's client
CPU converting between Python and protobuf (proto-plus marshalling, its
``DocumentExtractor``, deep copies of every snapshot). This module builds the raw
protobuf messages of ``google.cloud.firestore_v1.types`` directly (``Type.pb()``)
and sends them straight on a gRPC channel (:mod:`worker.firestore_rpc`), so a
commit or a read costs well under half the client CPU.

It speaks the high-level client's vocabulary: :data:`SERVER_TIMESTAMP`,
:class:`Increment` (and ``Maximum``, ``Minimum``, ``ArrayUnion``, ``ArrayRemove``)
and :data:`DELETE_FIELD` are that library's own sentinels; values decode to what
its ``to_dict()`` gives (timestamps as tz-aware UTC ``DatetimeWithNanoseconds``,
geo points as :class:`GeoPoint`), except references, which decode to
:class:`Reference`. Field paths follow its rules: ``update()`` keys are dotted
paths (backticks quote a name with a dot), ``create``/``set`` keys are plain names,
and every name that is not a simple identifier is backtick-quoted in masks and
transforms. Errors of the API (``google.api_core.exceptions``) propagate unchanged.

Build one :class:`Store` per process with :func:`build_store`; it is thread-safe.
A :class:`Writes` belongs to one thread until it is committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import types
from google.protobuf import timestamp_pb2

from worker.firestore_rpc import FirestoreRpc, open_rpc

SERVER_TIMESTAMP = firestore.SERVER_TIMESTAMP  # the high-level client's sentinels, re-exported
DELETE_FIELD = firestore.DELETE_FIELD
Increment = firestore.Increment
Maximum = firestore.Maximum
Minimum = firestore.Minimum
ArrayUnion = firestore.ArrayUnion
ArrayRemove = firestore.ArrayRemove
GeoPoint = firestore.GeoPoint

DEFAULT_DATABASE = "(default)"

# The raw protobuf classes (``Type.pb()``) of the requests built here.
_CommitRequest = types.CommitRequest.pb()
_BatchGetRequest = types.BatchGetDocumentsRequest.pb()
_REQUEST_TIME = int(types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SPECIAL = (type(SERVER_TIMESTAMP), Increment, Maximum, Minimum, ArrayUnion, ArrayRemove)
_SIMPLE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_PATH_TOKEN = re.compile(r"(?P<simple>[_a-zA-Z][_a-zA-Z0-9]*)|(?P<quoted>`(?:\\`|[^`])*?`)|\.")
_LEADING_ALPHA_INVALID = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*[~*/\[\]]")

_Path = tuple[str | int, ...]  # field names, and indexes inside arrays (for messages)
_Transform = tuple[tuple[str, ...], Any]  # a field path and its sentinel or transform


@dataclass(frozen=True)
class Reference:
    """A reference value: the full resource name of the document it points at."""

    name: str  # projects/{p}/databases/{d}/documents/{collection}/{id}...


@dataclass(frozen=True)
class Doc:
    """One read document; ``exists`` False (and no fields) when it is missing."""

    name: str  # the full resource name: projects/.../documents/orders/o1
    exists: bool
    fields: dict[str, Any]  # decoded to plain Python values
    update_time: Any  # the raw protobuf Timestamp, or None when missing

    @property
    def id(self) -> str:
        """The document's id: the last segment of its name."""
        return self.name.rpartition("/")[2]

    def to_dict(self) -> dict[str, Any]:
        """Return a shallow copy of the fields (empty when the document is missing)."""
        return dict(self.fields)


@dataclass(frozen=True)
class WriteOutcome:
    """What one write of a commit left."""

    update_time: Any  # raw Timestamp: the document's update time (a delete: the commit time)
    transform_results: list[Any]  # decoded, in the order of the write's transforms


class Writes:
    """An atomic set of writes, committed in one Commit RPC by :meth:`Store.commit`.

    Each call adds one write. Transforms (``SERVER_TIMESTAMP``, ``Increment``, ...)
    anywhere in the data, outside arrays, become field transforms of that write at
    their field path, in the order they appear; they are not document fields. A
    call that raises adds nothing.
    """

    __slots__ = ("_request",)

    def __init__(self, database: str) -> None:
        """Collect writes for ``database`` (``projects/{p}/databases/{d}``)."""
        self._request = _CommitRequest(database=database)

    def __len__(self) -> int:
        """Return the number of writes added."""
        return len(self._request.writes)

    @property
    def request(self) -> Any:
        """The raw ``CommitRequest`` protobuf being built (do not change it)."""
        return self._request

    def create(self, path: str, fields: Mapping[str, Any]) -> None:
        """Create the document ``path`` with ``fields``; the commit fails if it exists."""
        with self._adding() as write:
            write.update.name = path
            transforms: list[_Transform] = []
            _encode_map(write.update.fields, fields, (), transforms, "create")
            write.current_document.exists = False
            _add_transforms(write, transforms)

    def set(self, path: str, fields: Mapping[str, Any], merge: bool = False) -> None:
        """Replace the document ``path`` by ``fields``, creating it if missing.

        With ``merge``, change only the leaf fields given (a non-empty map is
        descended into, an empty one is a leaf), as ``set(..., merge=True)`` of
        the official client: ``DELETE_FIELD`` deletes its field.
        """
        with self._adding() as write:
            write.update.name = path
            transforms: list[_Transform] = []
            if merge:
                mask = write.update_mask
                mask.SetInParent()
                _encode_merge(write.update.fields, fields, (), mask.field_paths, transforms)
            else:
                _encode_map(write.update.fields, fields, (), transforms, "set without merge")
            _add_transforms(write, transforms)

    def update(self, path: str, fields: Mapping[str, Any], last_update_time: Any = None) -> None:
        """Change the fields of the existing document ``path``.

        Keys are field paths, as the official client's ``update()``: dots separate
        names (``"actions.send_confirmation.state"``), backticks quote a name that
        contains one. The update mask is exactly those paths: a dict value replaces
        the whole map there, ``DELETE_FIELD`` deletes the field, other fields stay.
        The commit fails with NotFound if the document is missing, or with
        FailedPrecondition if ``last_update_time`` (a raw Timestamp, or a datetime)
        is given and the document's update time differs.
        """
        if not fields:
            raise ValueError(f"update of {path} needs at least one field")
        entries = [(_update_key(key), value) for key, value in fields.items()]
        _refuse_overlaps([parts for parts, _ in entries])
        with self._adding() as write:
            document = write.update
            document.name = path
            mask = write.update_mask
            mask.SetInParent()  # present even when empty: never a full replace
            transforms: list[_Transform] = []
            for parts, value in entries:
                if value is DELETE_FIELD:
                    mask.field_paths.append(_render(parts))
                elif isinstance(value, _SPECIAL):
                    transforms.append((parts, value))
                else:
                    mask.field_paths.append(_render(parts))
                    target = document.fields
                    for name in parts[:-1]:
                        target = target[name].map_value.fields
                    _encode_value(
                        target[parts[-1]], value, parts, transforms, "update() below a key"
                    )
            if last_update_time is None:
                write.current_document.exists = True
            else:
                _set_timestamp(write.current_document.update_time, last_update_time)
            _add_transforms(write, transforms)

    def delete(self, path: str, last_update_time: Any = None) -> None:
        """Delete the document ``path`` (no error if it is missing).

        With ``last_update_time`` (a raw Timestamp, or a datetime) the commit fails
        with FailedPrecondition unless the document exists with that update time.
        """
        with self._adding() as write:
            write.delete = path
            if last_update_time is not None:
                _set_timestamp(write.current_document.update_time, last_update_time)

    @contextlib.contextmanager
    def _adding(self) -> Iterator[Any]:
        writes = self._request.writes
        write = writes.add()
        try:
            yield write
        except BaseException:
            del writes[-1]  # a write that could not be built is not committed
            raise


class Store:
    """Reads and atomic commits on raw protobuf, straight on a gRPC channel."""

    def __init__(self, calls: FirestoreRpc, project: str, database: str) -> None:
        """Use ``calls`` for the documents of ``project``'s ``database``."""
        self._calls = calls
        self.project = project
        self.database = database
        self.database_name = f"projects/{project}/databases/{database}"
        self.documents_root = f"{self.database_name}/documents"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call sends (besides the routing header)."""
        return self._calls.metadata

    def document(self, *segments: str) -> str:
        """Return the full resource name of the document ``segments`` name.

        ``document("orders", "o1")`` is ``projects/{p}/databases/{d}/documents/orders/o1``.
        Raises ValueError unless there is an even, non-zero number of non-empty
        segments without ``/``.
        """
        if not segments or len(segments) % 2:
            raise ValueError(
                f"a document path needs an even number of segments, not {len(segments)}: "
                f"{segments!r}"
            )
        for segment in segments:
            if not isinstance(segment, str) or not segment or "/" in segment:
                raise ValueError(
                    f"document path segment {segment!r} must be a non-empty string without '/'"
                )
        return f"{self.documents_root}/{'/'.join(segments)}"

    def get(self, path: str) -> Doc:
        """Read one document (a unary GetDocument); a missing one has ``exists`` False."""
        try:
            return _document(self._calls.get_document(path))
        except gexc.NotFound:
            return Doc(path, False, {}, None)

    def get_later(self, path: str) -> Callable[[], Doc]:
        """Start reading one document; the returned function waits for it, as :meth:`get`."""
        answer = self._calls.get_document_later(path)

        def doc() -> Doc:
            try:
                return _document(answer())
            except gexc.NotFound:
                return Doc(path, False, {}, None)

        return doc

    def get_all(self, paths: Iterable[str]) -> dict[str, Doc]:
        """Read documents in one BatchGetDocuments call, keyed by full path, in given order.

        Missing documents are included, with ``exists`` False; a repeated path is
        read once.
        """
        names = list(dict.fromkeys(paths))
        if not names:
            return {}
        request = _BatchGetRequest(database=self.database_name, documents=names)
        found: dict[str, Doc] = {}
        for result in self._calls.batch_get_documents(request):
            if result.HasField("found"):
                doc = _document(result.found)
            else:
                doc = Doc(result.missing, False, {}, None)
            found[doc.name] = doc
        return {name: found[name] for name in names if name in found}

    def writes(self) -> Writes:
        """Return an empty set of writes for :meth:`commit`."""
        return Writes(self.database_name)

    def commit(self, writes: Writes) -> list[WriteOutcome]:
        """Apply ``writes`` atomically in one Commit: all of them, or none.

        Returns one outcome per write, in order. A refused precondition raises
        the API's error (AlreadyExists, NotFound, FailedPrecondition) and writes
        nothing.
        """
        result = self._calls.commit(writes.request)
        commit_time = result.commit_time
        return [
            WriteOutcome(
                each.update_time if each.HasField("update_time") else commit_time,
                [_decode(value) for value in each.transform_results],
            )
            for each in result.write_results
        ]

    def close(self) -> None:
        """Close the channel; the store cannot be used afterwards."""
        self._calls.close()


def build_store(
    project: str,
    database: str = DEFAULT_DATABASE,
    rpc: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Store:
    """Return a :class:`Store` for ``project``'s ``database``; build one per process.

    With ``FIRESTORE_EMULATOR_HOST`` (in ``environ``, default ``os.environ``) it
    talks to the emulator as the official client does, as the emulator's admin;
    otherwise to Firestore with Application Default Credentials
    (:func:`worker.firestore_rpc.open_rpc`). ``rpc`` holds the ``retry`` and
    ``timeout`` (seconds per attempt) of every call; none: no retry, no timeout.
    """
    database_name = f"projects/{project}/databases/{database}"
    calls = open_rpc(database_name, rpc or {}, os.environ if environ is None else environ)
    return Store(calls, project, database)


# --- encoding: Python values into raw protobuf, in place ------------------------------


def _encode_map(
    fields: Any,
    data: Mapping[str, Any],
    prefix: _Path,
    transforms: list[_Transform] | None,
    context: str,
) -> None:
    """Encode ``data`` into the protobuf map ``fields``; sentinels go to ``transforms``.

    ``transforms`` is None inside arrays and transform operands, where sentinels
    are refused; ``context`` names the operation for ``DELETE_FIELD``'s refusal.
    """
    for key, value in data.items():
        path = _field(prefix, key)
        if isinstance(value, _SPECIAL):
            _special(path, value, transforms, context)
        else:
            _encode_value(fields[key], value, path, transforms, context)


def _encode_merge(
    fields: Any,
    data: Mapping[str, Any],
    prefix: _Path,
    mask: Any,
    transforms: list[_Transform],
) -> None:
    """Encode ``data`` for a merge: its leaves into ``fields`` and their paths into ``mask``."""
    for key, value in data.items():
        path = _field(prefix, key)
        if value is DELETE_FIELD:
            mask.append(_render(_names(path)))
        elif isinstance(value, _SPECIAL):
            transforms.append((_names(path), value))
        elif isinstance(value, Mapping) and value:
            nested = fields[key].map_value.fields
            _encode_merge(nested, value, path, mask, transforms)
            if not nested:  # only transforms and deletes below: no data field here
                del fields[key]
        else:
            mask.append(_render(_names(path)))
            _encode_value(fields[key], value, path, transforms, "set with merge")


def _encode_value(
    target: Any, value: Any, path: _Path, transforms: list[_Transform] | None, context: str
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
        _encode_map(map_value.fields, value, path, transforms, context)
    elif value is None:
        target.null_value = 0
    elif kind is bool:
        target.boolean_value = value
    elif kind is float:
        target.double_value = value
    elif isinstance(value, dt.datetime):
        _set_timestamp(target.timestamp_value, value)
    else:
        _encode_other(target, value, path, transforms, context)


def _encode_other(
    target: Any, value: Any, path: _Path, transforms: list[_Transform] | None, context: str
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
        _encode_map(map_value.fields, value, path, transforms, context)
    elif isinstance(value, list | tuple | set | frozenset):
        _encode_array(target.array_value, value, path)
    elif isinstance(value, GeoPoint):
        target.geo_point_value.latitude = value.latitude
        target.geo_point_value.longitude = value.longitude
    elif isinstance(value, Reference):
        target.reference_value = value.name
    elif isinstance(value, _SPECIAL):
        _special(path, value, None, context)
    else:
        kind = type(value)
        raise TypeError(
            f"cannot encode field {_describe(path)}: {kind.__module__}.{kind.__qualname__} "
            "is not a Firestore value type"
        )


def _encode_array(target: Any, values: Iterable[Any], path: _Path) -> None:
    """Encode ``values`` into the raw ``ArrayValue`` message ``target``."""
    target.SetInParent()  # an empty array is still an array
    elements = target.values
    for index, value in enumerate(values):
        _encode_value(elements.add(), value, (*path, index), None, "an array")


def _set_integer(target: Any, value: int, path: _Path) -> None:
    try:
        target.integer_value = value
    except ValueError:
        raise ValueError(
            f"cannot encode field {_describe(path)}: {value} is out of the 64-bit integer range"
        ) from None


def _set_timestamp(target: Any, value: Any) -> None:
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


def _special(path: _Path, value: Any, transforms: list[_Transform] | None, context: str) -> None:
    """Record the sentinel or transform ``value`` at ``path``, or refuse it there."""
    if transforms is None:
        raise TypeError(
            f"cannot encode field {_describe(path)}: {value!r} cannot be inside {context}"
        )
    if value is DELETE_FIELD:
        raise ValueError(f"DELETE_FIELD at {_describe(path)} is not allowed in {context}")
    transforms.append((_names(path), value))


def _add_transforms(write: Any, transforms: list[_Transform]) -> None:
    """Add ``transforms`` to the raw ``Write`` as its update transforms, in order."""
    for names, spec in transforms:
        transform = write.update_transforms.add()
        transform.field_path = _render(names)
        if spec is SERVER_TIMESTAMP:
            transform.set_to_server_value = _REQUEST_TIME
        elif isinstance(spec, Increment):
            _encode_value(transform.increment, spec.value, names, None, "a transform")
        elif isinstance(spec, Maximum):
            _encode_value(transform.maximum, spec.value, names, None, "a transform")
        elif isinstance(spec, Minimum):
            _encode_value(transform.minimum, spec.value, names, None, "a transform")
        elif isinstance(spec, ArrayUnion):
            _encode_array(transform.append_missing_elements, spec.values, names)
        elif isinstance(spec, ArrayRemove):
            _encode_array(transform.remove_all_from_array, spec.values, names)
        else:  # another sentinel of the official client (none exists today)
            raise TypeError(f"field {_describe(names)}: {spec!r} is not supported by worker.store")


# --- field paths ----------------------------------------------------------------------


def _field(prefix: _Path, key: Any) -> _Path:
    """Return the path of the field ``key`` of the map at ``prefix``, checking the key."""
    if not isinstance(key, str):
        raise TypeError(
            f"cannot encode a key of {_describe(prefix)}: {key!r} is a {type(key).__name__}, "
            "not a str"
        )
    if not key:
        raise ValueError(f"cannot encode a key of {_describe(prefix)}: field names are not empty")
    return (*prefix, key)


def _names(path: _Path) -> tuple[str, ...]:
    """Return ``path`` as field names (it has no array index: sentinels are not in arrays)."""
    return tuple(str(name) for name in path)


@functools.lru_cache(maxsize=4096)
def _render(names: tuple[str, ...]) -> str:
    """Render field names as a field path, backtick-quoting those that are not identifiers.

    As the official client's ``render_field_path``: inside backticks, a backslash
    and a backtick are escaped with a backslash.
    """
    return ".".join(_quote(name) for name in names)


def _quote(name: str) -> str:
    if _SIMPLE_NAME.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _describe(path: _Path) -> str:
    """Render ``path`` for a message: field names as a field path, array indexes as [i]."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + _quote(part)
    return repr(text) if text else "(the document)"


def _update_key(key: Any) -> tuple[str, ...]:
    """Split an ``update()`` key into field names, as the official ``FieldPath.from_string``."""
    if not isinstance(key, str):
        raise TypeError(f"an update key must be a str field path, not {type(key).__name__}")
    return _parse_update_key(key)


@functools.lru_cache(maxsize=4096)
def _parse_update_key(key: str) -> tuple[str, ...]:
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


def _refuse_overlaps(paths: list[tuple[str, ...]]) -> None:
    """Refuse update paths given twice, or one inside another (as the official client)."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise ValueError(f"a field path is given twice in {[_render(p) for p in paths]}")
    for names in paths:
        for end in range(1, len(names)):
            if names[:end] in seen:
                raise ValueError(
                    f"conflicting field paths: {_render(names[:end])} and {_render(names)}"
                )


# --- decoding: raw protobuf into Python values ----------------------------------------


def _document(document: Any) -> Doc:
    """Return the :class:`Doc` of a raw ``Document`` message."""
    fields = {key: _decode(value) for key, value in document.fields.items()}
    return Doc(document.name, True, fields, document.update_time)


def _decode(value: Any) -> Any:
    """Return the Python value of a raw ``Value`` message, as the official client does."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "integer_value":
        return value.integer_value
    if kind == "map_value":
        return {key: _decode(each) for key, each in value.map_value.fields.items()}
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(value.timestamp_value)
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "null_value":
        return None
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [_decode(each) for each in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "geo_point_value":
        return GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    if kind == "reference_value":
        return Reference(value.reference_value)
    raise ValueError(f"cannot decode a Firestore value of kind {kind}")
