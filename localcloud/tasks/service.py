"""The Cloud Tasks v2 API: task methods, and the table of every method for gRPC and REST.

Handlers take and return raw protobuf messages (``tasks_v2.X.pb()``) for speed.
Errors are :class:`TasksEmulatorError` subclasses mapped to their gRPC status;
an undecodable request is ``INVALID_ARGUMENT``; anything unexpected becomes
``INTERNAL`` with a generic message (the log has the exception), never ``UNKNOWN``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from localcloud.tasks.dispatcher import Dispatcher
from localcloud.tasks.errors import (
    InvalidArgumentError,
    OperationNotFoundError,
    TasksEmulatorError,
)
from localcloud.tasks.model import TaskRecord
from localcloud.tasks.operations import OperationLog, batch_operation
from localcloud.tasks.paging import decode_page_token, encode_page_token, page_size
from localcloud.tasks.queues import BetaQueue, Queue, QueueService
from localcloud.tasks.resource_names import check_queue_name, check_task_name
from localcloud.tasks.task_conversion import fill_task_pb, task_from_request, task_to_pb
from localcloud.tasks.task_store import TaskStore

log = logging.getLogger(__name__)

TASKS_SERVICE = "google.cloud.tasks.v2.CloudTasks"
BETA_TASKS_SERVICE = "google.cloud.tasks.v2beta3.CloudTasks"
OPERATIONS_SERVICE = "google.longrunning.Operations"
MAX_BATCH_REQUESTS = 100
MAX_MESSAGE_CHARS = 2000  # an error message's length over gRPC, in characters
INTERNAL_MESSAGE = "Internal emulator error; the emulator's log has the detail."

_Task = tasks_v2.Task.pb()
_BatchResponse = tasks_v2.BatchCreateTasksResponse.pb()


@dataclass(frozen=True)
class Method:
    """One API method: its handler and its raw request and response message classes."""

    handler: Callable[[Any], Any]
    request_cls: Any
    response_cls: Any


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
        self.operations = operations or OperationLog(store)
        self.queues = QueueService(store, dispatcher)

    # -- tasks ------------------------------------------------------------------

    def create_task(self, request: Any) -> Any:
        """CreateTask: validate and add atomically (ALREADY_EXISTS if the name is taken)."""
        queue = self._store.get_queue(check_queue_name(request.parent))
        record = task_from_request(request, queue, time.time(), self.max_task_bytes)
        return task_to_pb(self._store.add_task(record), request.response_view, _Task)

    def batch_create_tasks(self, request: Any) -> Any:
        """BatchCreateTasks: a done Operation with per-index failures in its metadata.

        A repeated ``request_id`` returns the first call's operation and creates nothing.
        """
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
        if not request.request_id:
            return self._batch(request, parent, f"{location}/operations/{uuid.uuid4().hex}")
        op_name = f"{location}/operations/{request.request_id}"
        with self.operations.lock:  # one request_id, one creation, even when raced
            previous = self.operations.get(op_name)
            return previous if previous is not None else self._batch(request, parent, op_name)

    def _batch(self, request: Any, parent: str, op_name: str) -> Any:
        count = len(request.requests)
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
                fill_task_pb(result, view, response.tasks.add())
        operation = batch_operation(op_name, started_s, response, failures, count)
        self.operations.put(operation)
        return operation

    def get_task(self, request: Any) -> Any:
        """GetTask: NOT_FOUND for unknown, finished and deleted tasks."""
        task = self._store.get_task(check_task_name(request.name))
        return task_to_pb(task, request.response_view, _Task)

    def list_tasks(self, request: Any) -> Any:
        """ListTasks, by name, paged by opaque tokens."""
        parent = check_queue_name(request.parent)
        after, size = decode_page_token(request.page_token), page_size(request.page_size)
        tasks, last = self._store.list_tasks(parent, after, size)
        response = tasks_v2.ListTasksResponse.pb()()
        response.tasks.extend(task_to_pb(t, request.response_view, _Task) for t in tasks)
        if last is not None:
            response.next_page_token = encode_page_token(last)
        return response

    def delete_task(self, request: Any) -> Any:
        """DeleteTask: the name stays reserved like a finished task's."""
        self._store.delete_task(check_task_name(request.name))
        return empty_pb2.Empty()

    def run_task(self, request: Any) -> Any:
        """RunTask: dispatch now, ignoring rate limits and pause; replaces the scheduled attempt.

        A task already being dispatched is returned as it is, not sent twice.
        """
        name = check_task_name(request.name)
        leased = self._store.lease_task(name, time.time())
        if leased is None:
            return task_to_pb(self._store.get_task(name), request.response_view, _Task)
        self._dispatcher.run_now(leased)
        return task_to_pb(leased, request.response_view, _Task)

    def get_operation(self, request: Any) -> Any:
        """Operations.GetOperation for BatchCreateTasks operations."""
        operation = self.operations.get(request.name)
        if operation is None:
            raise OperationNotFoundError(f"Operation {request.name} not found.")
        return operation

    # -- the method table ---------------------------------------------------------

    def methods(self) -> dict[str, Method]:
        """Return every v2 CloudTasks method (and GetOperation) by its RPC name."""
        t, q = tasks_v2, self.queues
        table: dict[str, tuple[Callable[[Any], Any], Any, Any]] = {
            "CreateQueue": (q.create_queue, t.CreateQueueRequest.pb(), Queue),
            "GetQueue": (q.get_queue, t.GetQueueRequest.pb(), Queue),
            "ListQueues": (q.list_queues, t.ListQueuesRequest.pb(), t.ListQueuesResponse.pb()),
            "UpdateQueue": (q.update_queue, t.UpdateQueueRequest.pb(), Queue),
            "DeleteQueue": (q.delete_queue, t.DeleteQueueRequest.pb(), empty_pb2.Empty),
            "PauseQueue": (q.pause_queue, t.PauseQueueRequest.pb(), Queue),
            "ResumeQueue": (q.resume_queue, t.ResumeQueueRequest.pb(), Queue),
            "PurgeQueue": (q.purge_queue, t.PurgeQueueRequest.pb(), Queue),
            "CreateTask": (self.create_task, t.CreateTaskRequest.pb(), _Task),
            "BatchCreateTasks": (
                self.batch_create_tasks,
                t.BatchCreateTasksRequest.pb(),
                operations_pb2.Operation,
            ),
            "GetTask": (self.get_task, t.GetTaskRequest.pb(), _Task),
            "ListTasks": (self.list_tasks, t.ListTasksRequest.pb(), t.ListTasksResponse.pb()),
            "DeleteTask": (self.delete_task, t.DeleteTaskRequest.pb(), empty_pb2.Empty),
            "RunTask": (self.run_task, t.RunTaskRequest.pb(), _Task),
            "GetOperation": (
                self.get_operation,
                operations_pb2.GetOperationRequest,
                operations_pb2.Operation,
            ),
        }
        return {name: Method(*entry) for name, entry in table.items()}

    def beta_methods(self) -> dict[str, Method]:
        """Return the v2beta3 methods served: GetQueue and ListQueues, for queue statistics."""
        b, q = tasks_v2beta3, self.queues
        return {
            "GetQueue": Method(q.get_queue_beta, b.GetQueueRequest.pb(), BetaQueue),
            "ListQueues": Method(
                q.list_queues_beta, b.ListQueuesRequest.pb(), b.ListQueuesResponse.pb()
            ),
        }

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """Return the generic handlers to add to a ``grpc.server``."""
        methods = self.methods()
        operations = {"GetOperation": methods.pop("GetOperation")}
        beta = self.beta_methods()
        return [
            generic_handler(TASKS_SERVICE, methods, self.rpc_latency_s),
            generic_handler(BETA_TASKS_SERVICE, beta, self.rpc_latency_s),
            generic_handler(OPERATIONS_SERVICE, operations, self.rpc_latency_s),
        ]


def call(method: Method, request: Any) -> tuple[Any, TasksEmulatorError | None]:
    """Run ``method`` on ``request``; return (response, None) or (None, the error).

    Unexpected exceptions become an ``INTERNAL`` :class:`TasksEmulatorError`.
    """
    try:
        return method.handler(request), None
    except TasksEmulatorError as exc:
        return None, exc
    except Exception:  # the log keeps the exception; the caller gets no internal detail
        log.exception("internal error in %s", getattr(method.handler, "__name__", method))
        return None, TasksEmulatorError(INTERNAL_MESSAGE)


def generic_handler(
    service: str, methods: dict[str, Method], latency_s: float
) -> grpc.GenericRpcHandler:
    """Return the gRPC handler of ``service``'s ``methods`` (raw bytes in, errors mapped).

    ``latency_s`` seconds are slept before each call (0 for none).
    """
    handlers = {name: _unary(method, latency_s) for name, method in methods.items()}
    return grpc.method_handlers_generic_handler(service, handlers)


def _unary(method: Method, latency_s: float) -> grpc.RpcMethodHandler:
    """Wrap ``method`` as a unary-unary handler with error mapping.

    ``latency_s`` seconds are slept before each call (0 for none).
    """

    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        if latency_s > 0:
            time.sleep(latency_s)
        error: TasksEmulatorError | None
        try:
            request = method.request_cls.FromString(data)
        except DecodeError:  # grpc's own deserializer would answer INTERNAL
            name = method.request_cls.DESCRIPTOR.name
            response, error = (
                None,
                InvalidArgumentError(
                    f"The request is not a valid {name} message (truncated, or a string "
                    "field that is not UTF-8)."
                ),
            )
        else:
            response, error = call(method, request)
        if error is not None:
            context.abort(error.grpc_code, short_message(str(error)))
        return response

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=None,  # raw bytes: decoded in handle, so that errors are ours
        response_serializer=_serialize,
    )


def short_message(message: str) -> str:
    """Return ``message`` cut to :data:`MAX_MESSAGE_CHARS` (it may quote a huge argument).

    gRPC carries it in a trailer, whose size the client limits.
    """
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message)} characters in all)"


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
