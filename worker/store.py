"""Firestore reads and atomic commits on raw protobuf, for the worker's hot path.

The high-level ``google.cloud.firestore`` client spends most of a request's client
CPU converting between Python and protobuf (proto-plus marshalling, its
``DocumentExtractor``, deep copies of every snapshot). This module builds the raw
protobuf messages of ``google.cloud.firestore_v1.types`` directly (``Type.pb()``)
and sends them straight on a gRPC channel (:mod:`worker.firestore_rpc`), so a
commit or a read costs well under half the client CPU.

It speaks the high-level client's vocabulary (:mod:`worker.values`):
:data:`SERVER_TIMESTAMP`, :class:`Increment` and :data:`DELETE_FIELD`, the
sentinels the worker uses, are re-exported here beside :class:`Writes`
(:mod:`worker.writes`), so that the worker imports its whole vocabulary from this
module; read fields decode as :func:`worker.values.decode` does. Field paths
follow that client's rules (:mod:`worker.field_paths`). Errors of the API
(``google.api_core.exceptions``) propagate unchanged.

Build one :class:`Store` per process with :func:`build_store`; it is thread-safe.
A :class:`Writes` belongs to one thread until it is committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1 import types

from worker.firestore_rpc import FirestoreRpc, open_rpc
from worker.values import DELETE_FIELD, SERVER_TIMESTAMP, Increment, decode
from worker.writes import Writes

__all__ = [
    "DEFAULT_DATABASE",
    "DELETE_FIELD",
    "SERVER_TIMESTAMP",
    "Doc",
    "Increment",
    "Store",
    "WriteOutcome",
    "Writes",
    "build_store",
]

DEFAULT_DATABASE = "(default)"

# The raw protobuf class (``Type.pb()``) of the request built here.
_BatchGetRequest = types.BatchGetDocumentsRequest.pb()


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
                [decode(value) for value in each.transform_results],
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


# --- decoding: raw protobuf documents ------------------------------------------------


def _document(document: Any) -> Doc:
    """Return the :class:`Doc` of a raw ``Document`` message."""
    fields = {key: decode(value) for key, value in document.fields.items()}
    return Doc(document.name, True, fields, document.update_time)
