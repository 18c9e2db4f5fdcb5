"""An atomic set of writes, built as one raw protobuf ``CommitRequest``.

:class:`Writes` collects creates, sets, updates and deletes for
:meth:`worker.store.Store.commit`, which sends them in one Commit RPC. Values are
encoded by :mod:`worker.values`, field paths follow :mod:`worker.field_paths`. A
:class:`Writes` belongs to one thread until it is committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from google.cloud.firestore_v1 import types

from worker.field_paths import parse_update_key, refuse_overlaps, render
from worker.values import (
    DELETE_FIELD,
    SPECIAL_TYPES,
    Transform,
    add_transforms,
    encode_map,
    encode_merge,
    encode_value,
    set_timestamp,
)

# The raw protobuf class (``Type.pb()``) of the request built here.
_CommitRequest = types.CommitRequest.pb()


class Writes:
    """An atomic set of writes, committed in one Commit RPC by :meth:`worker.store.Store.commit`.

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
            transforms: list[Transform] = []
            encode_map(write.update.fields, fields, (), transforms, "create")
            write.current_document.exists = False
            add_transforms(write, transforms)

    def set(self, path: str, fields: Mapping[str, Any], merge: bool = False) -> None:
        """Replace the document ``path`` by ``fields``, creating it if missing.

        With ``merge``, change only the leaf fields given (a non-empty map is
        descended into, an empty one is a leaf), as ``set(..., merge=True)`` of
        the official client: ``DELETE_FIELD`` deletes its field.
        """
        with self._adding() as write:
            write.update.name = path
            transforms: list[Transform] = []
            if merge:
                mask = write.update_mask
                mask.SetInParent()
                encode_merge(write.update.fields, fields, (), mask.field_paths, transforms)
            else:
                encode_map(write.update.fields, fields, (), transforms, "set without merge")
            add_transforms(write, transforms)

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
        entries = [(parse_update_key(key), value) for key, value in fields.items()]
        refuse_overlaps([parts for parts, _ in entries])
        with self._adding() as write:
            document = write.update
            document.name = path
            mask = write.update_mask
            mask.SetInParent()  # present even when empty: never a full replace
            transforms: list[Transform] = []
            for parts, value in entries:
                if value is DELETE_FIELD:
                    mask.field_paths.append(render(parts))
                elif isinstance(value, SPECIAL_TYPES):
                    transforms.append((parts, value))
                else:
                    mask.field_paths.append(render(parts))
                    target = document.fields
                    for name in parts[:-1]:
                        target = target[name].map_value.fields
                    encode_value(
                        target[parts[-1]], value, parts, transforms, "update() below a key"
                    )
            if last_update_time is None:
                write.current_document.exists = True
            else:
                set_timestamp(write.current_document.update_time, last_update_time)
            add_transforms(write, transforms)

    def delete(self, path: str, last_update_time: Any = None) -> None:
        """Delete the document ``path`` (no error if it is missing).

        With ``last_update_time`` (a raw Timestamp, or a datetime) the commit fails
        with FailedPrecondition unless the document exists with that update time.
        """
        with self._adding() as write:
            write.delete = path
            if last_update_time is not None:
                set_timestamp(write.current_document.update_time, last_update_time)

    def discard_last(self) -> None:
        """Take back the last write added (to add it again differently)."""
        del self._request.writes[-1]

    @contextlib.contextmanager
    def _adding(self) -> Iterator[Any]:
        writes = self._request.writes
        write = writes.add()
        try:
            yield write
        except BaseException:
            del writes[-1]  # a write that could not be built is not committed
            raise
