"""gRPC handlers of ``google.cloud.tasks.v2.CloudTasks`` and ``google.longrunning.Operations``.

Handlers use raw protobuf classes (``tasks_v2.X.pb()``) for speed. Errors are
:class:`TasksEmulatorError` subclasses mapped to their gRPC status; anything
unexpected becomes ``INTERNAL`` with its message, never ``UNKNOWN``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2
from google.rpc import status_pb2

from localcloud.tasks.convert import (
    check_location,
    check_queue_name,
    check_task_name,
    queue_from_pb,
    queue_to_pb,
    set_timestamp,
)
from localcloud.tasks.dispatcher import Dispatcher
from localcloud.tasks.errors import (
    InvalidArgumentError,
    OperationNotFoundError,
    TasksEmulatorError,
)
from localcloud.tasks.model import TaskRecord
from localcloud.tasks.store import TaskStore
from localcloud.tasks.taskconv import task_from_request, task_to_pb

log = logging.getLogger(__name__)

TASKS_SERVICE = "google.cloud.tasks.v2.CloudTasks"
OPERATIONS_SERVICE = "google.longrunning.Operations"
MAX_BATCH_REQUESTS = 100
MAX_PAGE_SIZE = 1000
DEFAULT_OPERATIONS_KEPT = 5000

_Task = tasks_v2.Task.pb()
_Queue = tasks_v2.Queue.pb()
_BatchResponse = tasks_v2.BatchCreateTasksResponse.pb()
_BatchMetadata = tasks_v2.BatchCreateTasksMetadata.pb()
_STATE_SUCCEEDED, _STATE_FAILED, _STATE_PARTIAL = 2, 3, 5


class OperationLog:
    """The last ``capacity`` long-running operations, by name (thread-safe)."""

    def __init__(self, capacity: int = DEFAULT_OPERATIONS_KEPT) -> None:
        self.capacity = capacity
        self._ops: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, operation: Any) -> None:
        """Remember ``operation``, evicting the oldest beyond ``capacity``."""
        with self._lock:
            self._ops[operation.name] = operation
            self._ops.move_to_end(operation.name)
            while len(self._ops) > self.capacity:
                self._ops.popitem(last=False)

    def get(self, name: str) -> Any | None:
        """Return the operation called ``name``, or None."""
        with self._lock:
            return self._ops.get(name)


def _page_offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgumentError(f"Invalid page_token '{token}'.")
    return int(token)


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgumentError(f"page_size must not be negative, got {size}.")
    return min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)


class CloudTasksService:
    """The Cloud Tasks v2 API over a :class:`TaskStore`, feeding a :class:`Dispatcher`.

    ``max_task_bytes`` is the largest accepted serialized task, in bytes;
    ``rpc_latency_s`` is a delay in seconds added to every gRPC call, to simulate
    a network round-trip.
    """

    def __init__(
        self,
        store: TaskStore,
        dispatcher: Dispatcher,
        max_task_bytes: int,
        operations: OperationLog | None = None,
        rpc_latency_s: float = 0.0,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self.max_task_bytes = max_task_bytes
        self.rpc_latency_s = rpc_latency_s
        self.operations = operations or OperationLog()

    # -- queues -----------------------------------------------------------------

    def create_queue(self, request: Any) -> Any:
        """CreateQueue: validate, fill in defaults, start dispatching."""
        config = queue_from_pb(request.parent, request.queue)
        self._store.create_queue(config)
        self._dispatcher.add_queue(config)
        return queue_to_pb(config, _Queue)

    def get_queue(self, request: Any) -> Any:
        """GetQueue."""
        return queue_to_pb(self._store.get_queue(check_queue_name(request.name)), _Queue)

    def list_queues(self, request: Any) -> Any:
        """ListQueues, paged by offset tokens; ``filter`` is not supported."""
        if request.filter:
            raise InvalidArgumentError("ListQueues filter is not supported by the emulator.")
        queues = self._store.list_queues(check_location(request.parent))
        offset, size = _page_offset(request.page_token), _page_size(request.page_size)
        response = tasks_v2.ListQueuesResponse.pb()()
        response.queues.extend(queue_to_pb(q, _Queue) for q in queues[offset : offset + size])
        if offset + size < len(queues):
            response.next_page_token = str(offset + size)
        return response

    def delete_queue(self, request: Any) -> Any:
        """DeleteQueue: drop the queue and its tasks, stop its dispatch loop."""
        name = check_queue_name(request.name)
        self._store.delete_queue(name)
        self._dispatcher.remove_queue(name)
        return empty_pb2.Empty()

    # -- tasks ------------------------------------------------------------------

    def create_task(self, request: Any) -> Any:
        """CreateTask: validate and add atomically (ALREADY_EXISTS if the name is taken)."""
        queue = self._store.get_queue(check_queue_name(request.parent))
        record = task_from_request(request, queue, time.time(), self.max_task_bytes)
        return task_to_pb(self._store.add_task(record), request.response_view, _Task)

    def batch_create_tasks(self, request: Any) -> Any:
        """BatchCreateTasks: a done Operation with per-index failures in its metadata."""
        parent = check_queue_name(request.parent)
        count = len(request.requests)
        if count == 0 or count > MAX_BATCH_REQUESTS:
            raise InvalidArgumentError(
                f"BatchCreateTasks takes 1 to {MAX_BATCH_REQUESTS} requests, got {count}."
            )
        for index, sub in enumerate(request.requests):
            if sub.parent and sub.parent != parent:
                raise InvalidArgumentError(
                    f"requests[{index}].parent '{sub.parent}' differs from parent '{parent}'."
                )
        location = parent.rsplit("/queues/", 1)[0]
        op_name = f"{location}/operations/{request.request_id or uuid.uuid4().hex}"
        if request.request_id:
            previous = self.operations.get(op_name)
            if previous is not None:
                return previous
        queue = self._store.get_queue(parent)
        started_s = time.time()
        failures: dict[int, TasksEmulatorError] = {}
        records: list[tuple[int, TaskRecord]] = []
        for index, sub in enumerate(request.requests):
            if not sub.parent:
                sub.parent = parent
            try:
                records.append(
                    (index, task_from_request(sub, queue, started_s, self.max_task_bytes))
                )
            except TasksEmulatorError as exc:
                failures[index] = exc
        added = self._store.add_tasks([record for _, record in records])
        response = _BatchResponse()
        for (index, _), result in zip(records, added, strict=True):
            if isinstance(result, TasksEmulatorError):
                failures[index] = result
            else:
                view = request.requests[index].response_view
                response.tasks.append(task_to_pb(result, view, _Task))
        operation = self._operation(op_name, started_s, response, failures, count)
        self.operations.put(operation)
        return operation

    @staticmethod
    def _operation(
        name: str,
        started_s: float,
        response: Any,
        failures: dict[int, TasksEmulatorError],
        count: int,
    ) -> Any:
        metadata = _BatchMetadata()
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

    def get_task(self, request: Any) -> Any:
        """GetTask: NOT_FOUND for unknown, finished and deleted tasks."""
        task = self._store.get_task(check_task_name(request.name))
        return task_to_pb(task, request.response_view, _Task)

    def list_tasks(self, request: Any) -> Any:
        """ListTasks, paged by offset tokens."""
        parent = check_queue_name(request.parent)
        offset, size = _page_offset(request.page_token), _page_size(request.page_size)
        tasks, next_offset = self._store.list_tasks(parent, offset, size)
        response = tasks_v2.ListTasksResponse.pb()()
        response.tasks.extend(task_to_pb(t, request.response_view, _Task) for t in tasks)
        if next_offset is not None:
            response.next_page_token = str(next_offset)
        return response

    def delete_task(self, request: Any) -> Any:
        """DeleteTask: the name stays reserved like a finished task's."""
        self._store.delete_task(check_task_name(request.name))
        return empty_pb2.Empty()

    def get_operation(self, request: Any) -> Any:
        """Operations.GetOperation for BatchCreateTasks operations."""
        operation = self.operations.get(request.name)
        if operation is None:
            raise OperationNotFoundError(f"Operation {request.name} not found.")
        return operation

    # -- gRPC wiring ------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """Return the generic handlers to add to a ``grpc.server``."""
        t = tasks_v2
        tasks_methods = {
            "CreateQueue": (self.create_queue, t.CreateQueueRequest, _Queue),
            "GetQueue": (self.get_queue, t.GetQueueRequest, _Queue),
            "ListQueues": (self.list_queues, t.ListQueuesRequest, t.ListQueuesResponse.pb()),
            "DeleteQueue": (self.delete_queue, t.DeleteQueueRequest, empty_pb2.Empty),
            "CreateTask": (self.create_task, t.CreateTaskRequest, _Task),
            "BatchCreateTasks": (
                self.batch_create_tasks,
                t.BatchCreateTasksRequest,
                operations_pb2.Operation,
            ),
            "GetTask": (self.get_task, t.GetTaskRequest, _Task),
            "ListTasks": (self.list_tasks, t.ListTasksRequest, t.ListTasksResponse.pb()),
            "DeleteTask": (self.delete_task, t.DeleteTaskRequest, empty_pb2.Empty),
        }
        tasks_handlers = {
            method: _unary(fn, request_cls.pb(), self.rpc_latency_s)
            for method, (fn, request_cls, response_cls) in tasks_methods.items()
        }
        ops_handlers = {
            "GetOperation": _unary(
                self.get_operation, operations_pb2.GetOperationRequest, self.rpc_latency_s
            )
        }
        return [
            grpc.method_handlers_generic_handler(TASKS_SERVICE, tasks_handlers),
            grpc.method_handlers_generic_handler(OPERATIONS_SERVICE, ops_handlers),
        ]


def _unary(
    fn: Callable[[Any], Any], request_cls: Any, latency_s: float
) -> grpc.RpcMethodHandler:
    """Wrap ``fn(request) -> response`` as a unary-unary handler with error mapping.

    ``latency_s`` seconds are slept before each call (0 for none).
    """

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if latency_s > 0:
            time.sleep(latency_s)
        try:
            return fn(request)
        except TasksEmulatorError as exc:
            code, message = exc.grpc_code, str(exc)
        except Exception as exc:
            log.exception("internal error in %s", getattr(fn, "__name__", fn))
            code, message = grpc.StatusCode.INTERNAL, f"Internal emulator error: {exc!r}"
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_cls.FromString,
        response_serializer=_serialize,
    )


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
