"""Firestore BatchWrite on raw protobuf, through the official generated (GAPIC) client.

Marking a page ``queued`` through ``BulkWriteBatch.update`` spent more client
CPU per order (field-path parsing, a deep copy, proto-plus conversions) than
every other step of a fan-out together; the writes here are built straight on
the protobuf and sent with the generated client's ``batch_write``, with its
default retry, on a channel from :func:`orders.clients.firestore_channel`
(emulator-aware, like the official client).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import types
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

from fanout.errors import MarkingError
from orders.clients import firestore_channel

SIMPLE_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_BatchWriteRequest = types.BatchWriteRequest.pb()
_REQUEST_TIME = types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME


class BatchWriter:
    """Sends BatchWrite requests for one database; build it once and share it (thread-safe)."""

    def __init__(
        self, project: str, database: str = "(default)", environ: Mapping[str, str] | None = None
    ) -> None:
        """Connect to ``database`` of ``project`` (the emulator when the environment names one)."""
        self.database = f"projects/{project}/databases/{database}"
        # Options of its own, so gRPC does not share a connection with other channels
        # of the same options in the process (the worker's store, in a test process).
        channel, self._metadata = firestore_channel(
            self.database,
            os.environ if environ is None else environ,
            [("grpc.primary_user_agent", "order-fanout-marking")],
        )
        self._channel = channel
        self._api = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def request(self) -> Any:
        """Return an empty raw ``BatchWriteRequest`` for this database."""
        return _BatchWriteRequest(database=self.database)

    def add_update(
        self, request: Any, snapshot: firestore.DocumentSnapshot, update: Mapping[str, Any]
    ) -> None:
        """Add an update of ``update``'s field paths to the document of ``snapshot``.

        The write's precondition is the ``update_time`` the snapshot was read at;
        ``firestore.SERVER_TIMESTAMP`` values become request-time transforms.
        """
        write = request.writes.add()
        write.update.name = f"{self.database}/documents/{snapshot.reference.path}"
        for path, value in update.items():
            if not SIMPLE_FIELD_PATH.fullmatch(path):
                raise MarkingError(f"field path {path!r} needs quoting; marking writes plain ones")
            if value is firestore.SERVER_TIMESTAMP:
                transform = write.update_transforms.add()
                transform.field_path = path
                transform.set_to_server_value = _REQUEST_TIME
                continue
            fields = write.update.fields
            *parents, leaf = path.split(".")
            for parent in parents:
                fields = fields[parent].map_value.fields
            _set_value(fields[leaf], value, path)
            write.update_mask.field_paths.append(path)
        update_time = snapshot.update_time
        if isinstance(update_time, DatetimeWithNanoseconds):
            write.current_document.update_time.CopyFrom(update_time.timestamp_pb())
        else:
            write.current_document.update_time.FromDatetime(update_time)

    def write(self, request: Any) -> list[Any]:
        """Send ``request``; return one ``google.rpc.Status`` per write, in order."""
        response = self._api.batch_write(
            request=types.BatchWriteRequest.wrap(request), metadata=self._metadata
        )
        return list(types.BatchWriteResponse.pb(response).status)


def _set_value(target: Any, value: Any, path: str) -> None:
    """Set a raw ``Value`` from a plain Python value (the kinds marking writes)."""
    if value is None:
        target.null_value = 0
    elif isinstance(value, bool):
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    else:
        raise MarkingError(
            f"field {path!r} holds a {type(value).__name__}, which marking does not write"
        )
