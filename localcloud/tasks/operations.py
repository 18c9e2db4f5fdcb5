"""Long-running operations of ``BatchCreateTasks``: building them and remembering them."""

from __future__ import annotations

import threading
import time
from typing import Any

from google.cloud import tasks_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from localcloud.tasks.errors import TasksEmulatorError
from localcloud.tasks.proto_time import set_timestamp
from localcloud.tasks.task_store import TaskStore

DEFAULT_OPERATIONS_KEPT = 5000
_STATE_SUCCEEDED, _STATE_FAILED, _STATE_PARTIAL = 2, 3, 5


class OperationLog:
    """Long-running operations by name, kept in the :class:`TaskStore` (the newest ``capacity``).

    So a ``request_id`` stays idempotent, and ``GetOperation`` answers, across a
    restart on the same database.
    """

    def __init__(self, store: TaskStore, capacity: int = DEFAULT_OPERATIONS_KEPT) -> None:
        self.capacity = capacity
        self._store = store
        self.lock = threading.Lock()  # held by callers to make check-then-create atomic

    def put(self, operation: Any) -> None:
        """Remember ``operation``, forgetting the oldest beyond ``capacity``."""
        self._store.put_operation(operation.name, operation.SerializeToString(), self.capacity)

    def get(self, name: str) -> Any | None:
        """Return the operation called ``name``, or None."""
        data = self._store.get_operation(name)
        return None if data is None else operations_pb2.Operation.FromString(data)


def batch_operation(
    name: str,
    started_s: float,
    response: Any,
    failures: dict[int, TasksEmulatorError],
    count: int,
) -> Any:
    """Return the done ``Operation`` of a BatchCreateTasks call of ``count`` requests.

    Its metadata maps each failed request's index to a ``google.rpc.Status``;
    ``started_s`` is the call's start in seconds since the epoch.
    """
    metadata = tasks_v2.BatchCreateTasksMetadata.pb()()
    set_timestamp(metadata.start_time, started_s)
    set_timestamp(metadata.end_time, time.time())
    if not failures:
        metadata.state = _STATE_SUCCEEDED
    else:
        metadata.state = _STATE_FAILED if len(failures) == count else _STATE_PARTIAL
    for index, exc in failures.items():
        metadata.failed_requests[index].CopyFrom(
            status_pb2.Status(code=exc.code_number, message=str(exc))
        )
    operation = operations_pb2.Operation(name=name, done=True)
    packed_meta, packed_response = any_pb2.Any(), any_pb2.Any()
    packed_meta.Pack(metadata)
    packed_response.Pack(response)
    operation.metadata.CopyFrom(packed_meta)
    operation.response.CopyFrom(packed_response)
    return operation
