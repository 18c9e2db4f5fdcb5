"""Create named tasks in bulk: BatchCreateTasks, several batches in flight.

``ALREADY_EXISTS`` means the named task was created before (by an earlier run, or
by a retried call that had in fact succeeded) and counts as *deduplicated*. A
server without BatchCreateTasks (``UNIMPLEMENTED``) gets concurrent CreateTask
calls instead. A task larger than the queue's limit is reported as failed without
being sent, and a pacer (:mod:`fanout.ramp`) paces the creations queue by queue.

Each task's name says its queue: a page's tasks are split by queue and each
queue's share goes out in its own calls (a call creates into one queue), all of
them in flight together, so every queue of a group is fed at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import tasks_v2
from google.rpc import code_pb2

from fanout.ramp import NoPacing, Pacer, SharedCap
from fanout.ratecap import CreationRateCap

log = logging.getLogger(__name__)

# The statuses a create is retried on; safe because task names are deterministic.

BATCH_LIMIT = 100  # requests per BatchCreateTasks call, the API's maximum
MAX_TASK_BYTES = 1024 * 1024  # Cloud Tasks' maximum task size, 1 MB
SINGLE_CREATES_PER_BATCH = 8  # CreateTask calls in flight per batch slot, in the fallback
REQUEST_RETRIES = 4  # rounds a request that failed with a retryable code is sent again
REQUEST_BACKOFF_S = 0.2  # seconds before the first such round; doubles each round

RETRYABLE = gretry.if_exception_type(
    gexc.ServiceUnavailable,
    gexc.ResourceExhausted,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
)


class Created(StrEnum):
    """What became of one task creation."""

    CREATED = "created"
    DEDUPLICATED = "deduplicated"
    FAILED = "failed"


@dataclass(frozen=True)
class CreateResult:
    """The outcome for one task; ``reason`` explains a failure."""

    outcome: Created
    reason: str = ""


class PendingCreation:
    """Task creations under way; :meth:`results` waits for them."""

    def __init__(
        self,
        results: list[CreateResult | None],
        calls: list[tuple[list[int], Future[list[CreateResult]]]],
    ) -> None:
        """Hold the results known already and the calls that will give the others."""
        self._results = results
        self._calls = calls

    def results(self) -> list[CreateResult]:
        """Wait for every call; return one result per task, in the order submitted."""
        for indexes, call in self._calls:
            for i, result in zip(indexes, call.result(), strict=True):
                self._results[i] = result
        return [r or _NOT_SENT for r in self._results]


class Enqueuer:
    """Creates tasks in the queues their names say, with one client built once and reused.

    ``rpc_timeout_s`` (seconds) bounds each call; calls failing with a retryable
    status are retried with exponential backoff, which is safe because task names
    are deterministic. ``max_task_bytes`` is the queue's task size limit.
    ``rate_cap`` paces creations: a :class:`~fanout.ramp.Pacer` per queue, or
    one :class:`CreationRateCap` for all queues together.
    """

    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        queue_path: str,
        batches_in_flight: int,
        rpc_timeout_s: float,
        rate_cap: CreationRateCap | Pacer | None = None,
        max_task_bytes: int = MAX_TASK_BYTES,
    ) -> None:
        """Use ``client`` with up to ``batches_in_flight`` calls at once.

        ``queue_path`` is the queue of tasks without a name (the fanout names all
        of its tasks).
        """
        self._client = client
        self._queue_path = queue_path
        self._timeout_s = rpc_timeout_s
        self._retry = gretry.Retry(
            predicate=RETRYABLE, initial=0.2, maximum=5.0, timeout=rpc_timeout_s * 3
        )
        self.pacer: Pacer = (
            SharedCap(rate_cap) if isinstance(rate_cap, CreationRateCap) else rate_cap or NoPacing()
        )
        self._max_task_bytes = max_task_bytes
        self._pool = ThreadPoolExecutor(batches_in_flight, thread_name_prefix="enqueue")
        self._singles = ThreadPoolExecutor(
            batches_in_flight * SINGLE_CREATES_PER_BATCH, thread_name_prefix="enqueue-one"
        )
        self._batch_supported = True

    def enqueue(self, tasks: Sequence[tasks_v2.Task]) -> list[CreateResult]:
        """Create ``tasks``; return one result per task, in the same order."""
        return self.submit(tasks).results()

    def submit(self, tasks: Sequence[tasks_v2.Task]) -> PendingCreation:
        """Start creating ``tasks`` and return at once; the results come from the handle.

        Calls queue behind those already submitted, so a caller that submits the
        next page before collecting this one keeps every call slot busy.
        """
        results: list[CreateResult | None] = []
        by_queue: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            raw = tasks_v2.Task.pb(task)  # the raw protobuf: no proto-plus lookups
            result = self._oversize(raw)
            results.append(result)
            if result is None:
                by_queue.setdefault(self._parent(raw), []).append(i)
        chunks = [
            (queue, indexes[start : start + BATCH_LIMIT])
            for queue, indexes in by_queue.items()
            for start in range(0, len(indexes), BATCH_LIMIT)
        ]
        calls = [
            (chunk, self._pool.submit(self._create_chunk, queue, [tasks[i] for i in chunk]))
            for queue, chunk in chunks
        ]
        return PendingCreation(results, calls)

    def close(self) -> None:
        """Stop the worker threads (the client stays usable by its owner)."""
        self._pool.shutdown(wait=True)
        self._singles.shutdown(wait=True)

    def _parent(self, raw_task: Any) -> str:
        """Return the queue a task (raw protobuf) goes to: the one its name is in."""
        name: str = raw_task.name
        return name.rsplit("/tasks/", 1)[0] if name else self._queue_path

    def _oversize(self, raw_task: Any) -> CreateResult | None:
        size = raw_task.ByteSize()
        if size <= self._max_task_bytes:
            return None
        return CreateResult(
            Created.FAILED,
            f"task is {size} bytes, over the queue's limit of {self._max_task_bytes} bytes",
        )

    def _create_chunk(self, queue: str, chunk: Sequence[tasks_v2.Task]) -> list[CreateResult]:
        self.pacer.take(queue, len(chunk))
        if self._batch_supported:
            try:
                return self._create_batch(queue, chunk)
            except gexc.MethodNotImplemented:
                log.warning("BatchCreateTasks is not implemented here; using CreateTask")
                self._batch_supported = False
        return list(self._singles.map(lambda task: self._create_one(queue, task), chunk))

    def _create_batch(self, queue: str, chunk: Sequence[tasks_v2.Task]) -> list[CreateResult]:
        """Create ``chunk`` in one call; requests that failed for a passing reason go again.

        A request in ``failed_requests`` with a retryable code (the same codes as a
        whole call) is sent again in a smaller batch after a backoff, up to
        REQUEST_RETRIES times; any other per-request code is final.
        """
        results: list[CreateResult] = [_NOT_SENT] * len(chunk)
        todo = list(range(len(chunk)))
        for round_no in range(REQUEST_RETRIES + 1):
            if round_no:
                time.sleep(min(REQUEST_BACKOFF_S * 2 ** (round_no - 1), 5.0))
            outcomes = self._batch_call(queue, [chunk[i] for i in todo])
            retry = []
            for i, (outcome, retryable) in zip(todo, outcomes, strict=True):
                results[i] = outcome
                if retryable:
                    retry.append(i)
            if not retry:
                break
            todo = retry
        return results

    def _batch_call(
        self, queue: str, tasks: Sequence[tasks_v2.Task]
    ) -> list[tuple[CreateResult, bool]]:
        """One BatchCreateTasks call into ``queue``: per task, the result and whether to resend."""
        # Built on the raw protobuf: the proto-plus wrappers cost more than the call.
        raw = tasks_v2.BatchCreateTasksRequest.pb()(parent=queue)
        for task in tasks:
            one = raw.requests.add()
            one.parent = queue
            one.task.CopyFrom(tasks_v2.Task.pb(task))
        request = tasks_v2.BatchCreateTasksRequest.wrap(raw)
        try:
            operation = self._client.batch_create_tasks(
                request=request, retry=self._retry, timeout=self._timeout_s
            )
        except gexc.MethodNotImplemented:
            raise
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:  # RetryError: retries ran out
            return [(CreateResult(Created.FAILED, f"BatchCreateTasks failed: {exc}"), False)] * len(
                tasks
            )
        # Only what the operation reports is trusted: a task counts as created when it is
        # in the response, as deduplicated when its request failed with ALREADY_EXISTS,
        # and as failed otherwise, so its order stays pending for the next run.
        try:
            response = operation.result(timeout=self._timeout_s)
            created = {task.name for task in type(response).pb(response).tasks}
            unknown = "BatchCreateTasks did not report this task as created"
        except (gexc.GoogleAPICallError, TimeoutError) as exc:
            created = set()
            unknown = f"BatchCreateTasks did not finish: {exc!r}"
        metadata = operation.metadata
        failed = metadata.failed_requests if metadata is not None else {}
        outcomes = []
        for i, one in enumerate(raw.requests):
            if i in failed:
                code = getattr(failed[i], "code", code_pb2.UNKNOWN)
                outcomes.append((_from_status(failed[i]), code in _RETRYABLE_CODES))
            elif one.task.name in created:
                outcomes.append((_CREATED, False))
            else:
                outcomes.append((CreateResult(Created.FAILED, unknown), False))
        return outcomes

    def _create_one(self, queue: str, task: tasks_v2.Task) -> CreateResult:
        try:
            self._client.create_task(
                parent=queue, task=task, retry=self._retry, timeout=self._timeout_s
            )
        except gexc.AlreadyExists:
            return _DEDUPLICATED
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            return CreateResult(Created.FAILED, f"CreateTask failed: {exc}")
        return _CREATED


_CREATED = CreateResult(Created.CREATED)
_DEDUPLICATED = CreateResult(Created.DEDUPLICATED)
_NOT_SENT = CreateResult(Created.FAILED, "not sent")
_RETRYABLE_CODES = frozenset(
    {
        code_pb2.UNAVAILABLE,
        code_pb2.RESOURCE_EXHAUSTED,
        code_pb2.DEADLINE_EXCEEDED,
        code_pb2.INTERNAL,
    }
)


def _from_status(status: object) -> CreateResult:
    code = getattr(status, "code", code_pb2.UNKNOWN)
    if code == code_pb2.ALREADY_EXISTS:
        return _DEDUPLICATED
    message = getattr(status, "message", "")
    return CreateResult(Created.FAILED, f"{code_pb2.Code.Name(code)}: {message}")
