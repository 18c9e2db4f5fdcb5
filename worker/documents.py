"""The worker's Firestore access: the official client (``google.cloud.firestore``), nothing else.

Reads are the client's document reads (``DocumentReference.get``,
``Client.get_all``); writes go in atomic commits of its ``WriteBatch`` through
:class:`orders.writes.Writes`, which the fanout uses too. The client brings
the endpoint, TLS, credentials (Application Default Credentials, or the
emulator when ``FIRESTORE_EMULATOR_HOST`` is set), its ``x-goog-api-client``
header. Retries are the library's per-method ones, bounded by ``rpc_timeout_s``
in all, and a commit that could land twice is not retried (:mod:`orders.writes`).

Sentinels the worker writes (:data:`SERVER_TIMESTAMP`, :class:`Increment`,
:data:`DELETE_FIELD`) are the client's, re-exported here so that the worker
imports its whole Firestore vocabulary from this module.

Build one :class:`Store` per process with :func:`build_store`; it is thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference as DocRef

from orders.writes import Writes, read_retry

__all__ = [
    "DELETE_FIELD",
    "SERVER_TIMESTAMP",
    "Doc",
    "DocRef",
    "Increment",
    "Store",
    "Writes",
    "build_store",
]

SERVER_TIMESTAMP = firestore.SERVER_TIMESTAMP
DELETE_FIELD = firestore.DELETE_FIELD
Increment = firestore.Increment


@dataclass(frozen=True)
class Doc:
    """One read document; ``exists`` False (and no fields) when it is missing."""

    ref: DocRef
    exists: bool
    fields: dict[str, Any]  # a copy of the document's data
    update_time: Any  # a datetime (with nanoseconds); None when missing

    @classmethod
    def of(cls, snapshot: firestore.DocumentSnapshot) -> Doc:
        """Return the :class:`Doc` of one of the client's snapshots."""
        if not snapshot.exists:
            return cls(snapshot.reference, False, {}, None)
        return cls(snapshot.reference, True, snapshot.to_dict() or {}, snapshot.update_time)


class Store:
    """Reads and atomic commits through one official client; thread-safe."""

    def __init__(self, client: firestore.Client, timeout_s: float) -> None:
        """Use ``client``; every call's attempt is bounded by ``timeout_s`` seconds."""
        self.client = client
        self._timeout_s = timeout_s
        self._read_retry = read_retry(timeout_s)

    def document(self, *segments: str) -> DocRef:
        """Return the reference of the document ``segments`` name (``"orders", "o1"``).

        Raises ValueError unless the segments make a document path.
        """
        ref: DocRef = self.client.document(*segments)
        return ref

    def get(self, ref: DocRef) -> Doc:
        """Read one document; a missing one has ``exists`` False."""
        return Doc.of(ref.get(retry=self._read_retry, timeout=self._timeout_s))

    def get_all(self, refs: Iterable[DocRef]) -> dict[str, Doc]:
        """Read documents in one call, keyed by path (``inventory/sku-1``).

        Missing documents are included, with ``exists`` False; a repeated one is read once.
        """
        unique = list({ref.path: ref for ref in refs}.values())
        if not unique:
            return {}
        snapshots = self.client.get_all(unique, retry=self._read_retry, timeout=self._timeout_s)
        return {snapshot.reference.path: Doc.of(snapshot) for snapshot in snapshots}

    def writes(self) -> Writes:
        """Return an empty set of writes for :meth:`commit`."""
        return Writes(self.client)

    def commit(self, writes: Writes) -> list[Any]:
        """Apply ``writes`` atomically (see :meth:`orders.writes.Writes.commit`)."""
        return writes.commit(self._timeout_s)

    def close(self) -> None:
        """Close the client; the store cannot be used afterwards."""
        self.client.close()


def build_store(client: firestore.Client, timeout_s: float) -> Store:
    """Return the :class:`Store` over ``client`` (:func:`orders.clients.firestore_client`).

    Build one per process. The client is the official one: the emulator with
    ``FIRESTORE_EMULATOR_HOST``, otherwise ``firestore.googleapis.com`` with
    Application Default Credentials.
    """
    return Store(client, timeout_s)


def integer_result(write_result: Any) -> int:
    """Return the integer the write's first ``Increment`` left (0 if it has none)."""
    for value in write_result.transform_results:
        if "integer_value" in value:
            result: int = value.integer_value
            return result
    return 0
