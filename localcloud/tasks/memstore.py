"""A thread-safe, in-memory :class:`~localcloud.tasks.store.TaskStore`."""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from localcloud.tasks.errors import (
    QueueAlreadyExistsError,
    QueueNotFoundError,
    TaskAlreadyExistsError,
    TaskNotFoundError,
    TasksEmulatorError,
)
from localcloud.tasks.model import AttemptRecord, AttemptResult, QueueConfig, TaskRecord
from localcloud.tasks.store import COUNTER_KEYS, DEFAULT_RESERVATION_S, ReadyListener, TaskStore


@dataclass(slots=True)
class _QueueState:
    config: QueueConfig
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    heap: list[tuple[float, int, str]] = field(default_factory=list)


class MemoryTaskStore(TaskStore):
    """In-memory :class:`TaskStore`; finished task names stay reserved ``reservation_s`` s."""

    def __init__(self, reservation_s: float = DEFAULT_RESERVATION_S) -> None:
        self.reservation_s = reservation_s
        self._lock = threading.Lock()
        self._queues: dict[str, _QueueState] = {}
        self._reserved: OrderedDict[str, float] = OrderedDict()  # name -> monotonic expiry
        self._seq = itertools.count(1)
        self._counts = dict.fromkeys(COUNTER_KEYS, 0)
        self._listener: ReadyListener | None = None

    def set_ready_listener(self, listener: ReadyListener | None) -> None:
        """Register the callback told when a task is (re)scheduled."""
        self._listener = listener

    def create_queue(self, config: QueueConfig) -> None:
        """Add a queue; raise :class:`QueueAlreadyExistsError` if its name exists."""
        with self._lock:
            if config.name in self._queues:
                raise QueueAlreadyExistsError(f"Queue {config.name} already exists.")
            self._queues[config.name] = _QueueState(config)

    def get_queue(self, name: str) -> QueueConfig:
        """Return a queue's config; raise :class:`QueueNotFoundError` if unknown."""
        with self._lock:
            return self._queue(name).config

    def list_queues(self, parent: str | None = None) -> list[QueueConfig]:
        """Return the queues under ``parent`` (``projects/P/locations/L``), or all."""
        prefix = None if parent is None else parent + "/queues/"
        with self._lock:
            return [
                q.config
                for name, q in self._queues.items()
                if prefix is None or name.startswith(prefix)
            ]

    def delete_queue(self, name: str) -> None:
        """Delete a queue and its tasks (their names stay reserved)."""
        with self._lock:
            state = self._queue(name)
            for task in state.tasks.values():
                self._drop(task)
            del self._queues[name]

    def add_tasks(self, tasks: Sequence[TaskRecord]) -> list[TaskRecord | TasksEmulatorError]:
        """Add tasks one by one; per task return a copy of it or the error it raised."""
        results: list[TaskRecord | TasksEmulatorError] = []
        ready: list[tuple[str, float]] = []
        with self._lock:
            self._prune_reservations(time.monotonic())
            for task in tasks:
                try:
                    results.append(self._add(task))
                    ready.append((task.queue_name, task.schedule_time_s))
                except TasksEmulatorError as exc:
                    results.append(exc)
        self._notify(ready)
        return results

    def get_task(self, name: str) -> TaskRecord:
        """Return a copy of a live task; raise :class:`TaskNotFoundError` otherwise."""
        with self._lock:
            return copy.copy(self._task(name))

    def list_tasks(
        self, queue_name: str, offset: int, limit: int
    ) -> tuple[list[TaskRecord], int | None]:
        """Return up to ``limit`` live tasks from ``offset`` and the next offset (or None)."""
        with self._lock:
            tasks = self._queue(queue_name).tasks
            page = [copy.copy(t) for t in itertools.islice(tasks.values(), offset, offset + limit)]
            more = offset + limit < len(tasks)
        return page, (offset + limit if more else None)

    def delete_task(self, name: str) -> None:
        """Delete a live task, reserving its name; raise :class:`TaskNotFoundError`."""
        with self._lock:
            task = self._task(name)
            del self._queues[task.queue_name].tasks[name]
            self._drop(task)
            self._counts["deleted"] += 1

    def lease_due(
        self, queue_name: str, now_s: float, limit: int
    ) -> tuple[list[TaskRecord], float | None]:
        """Lease up to ``limit`` due tasks for dispatch (see :meth:`TaskStore.lease_due`)."""
        leased: list[TaskRecord] = []
        with self._lock:
            state = self._queues.get(queue_name)
            if state is None:
                return leased, None
            heap, tasks = state.heap, state.tasks
            while heap and len(leased) < limit:
                due_s, seq, name = heap[0]
                task = tasks.get(name)
                if task is None or task.heap_seq != seq:
                    heapq.heappop(heap)  # stale entry: task finished, deleted or moved
                    continue
                if due_s > now_s:
                    break
                heapq.heappop(heap)
                task.heap_seq = 0
                task.leased = True
                task.dispatch_count += 1
                attempt = AttemptRecord(schedule_time_s=due_s, dispatch_time_s=now_s)
                if task.first_attempt is None:
                    task.first_attempt = attempt
                task.last_attempt = attempt
                self._counts["dispatches"] += 1
                self._counts["in_flight"] += 1
                if task.dispatch_count > 1:
                    self._counts["retries"] += 1
                leased.append(copy.copy(task))
            next_due = self._next_due(state)
        return leased, next_due

    def finish(self, name: str, result: AttemptResult, outcome: str) -> None:
        """Record the last attempt and delete the task (``succeeded`` or ``exhausted``)."""
        with self._lock:
            task = self._leased_task(name)
            if task is None:
                return
            self._record(task, result)
            del self._queues[task.queue_name].tasks[name]
            self._drop(task)
            self._counts[outcome] += 1

    def reschedule(
        self, name: str, result: AttemptResult, schedule_time_s: float, retry_reason: str
    ) -> None:
        """Record a failed attempt and schedule the next one at ``schedule_time_s``."""
        with self._lock:
            task = self._leased_task(name)
            if task is None:
                return
            self._record(task, result)
            task.leased = False
            self._counts["in_flight"] -= 1
            task.last_retry_reason = retry_reason
            task.schedule_time_s = schedule_time_s
            self._push(self._queues[task.queue_name], task)
        self._notify([(task.queue_name, schedule_time_s)])

    def release_leases(self) -> int:
        """Return leased tasks to their queues (after a stop or restart); return how many."""
        released = 0
        with self._lock:
            for state in self._queues.values():
                for task in state.tasks.values():
                    if task.leased:
                        task.leased = False
                        self._counts["in_flight"] -= 1
                        self._push(state, task)
                        released += 1
        return released

    def reset_reservations(self) -> None:
        """Forget every reserved name of finished or deleted tasks."""
        with self._lock:
            self._reserved.clear()

    def counters(self) -> dict[str, int]:
        """Return the counters named in :data:`COUNTER_KEYS`."""
        with self._lock:
            return dict(self._counts)

    # -- internals (call with the lock held) ------------------------------------

    def _queue(self, name: str) -> _QueueState:
        state = self._queues.get(name)
        if state is None:
            raise QueueNotFoundError(f"Queue {name} does not exist.")
        return state

    def _task(self, name: str) -> TaskRecord:
        queue_name = name.rsplit("/tasks/", 1)[0]
        state = self._queues.get(queue_name)
        task = None if state is None else state.tasks.get(name)
        if task is None:
            raise TaskNotFoundError(f"Task {name} does not exist (or has finished).")
        return task

    def _leased_task(self, name: str) -> TaskRecord | None:
        state = self._queues.get(name.rsplit("/tasks/", 1)[0])
        task = None if state is None else state.tasks.get(name)
        return task if task is not None and task.leased else None

    def _add(self, task: TaskRecord) -> TaskRecord:
        state = self._queue(task.queue_name)
        if task.name in state.tasks:
            self._counts["deduplicated"] += 1
            raise TaskAlreadyExistsError(f"Task {task.name} already exists.")
        if task.name in self._reserved:
            self._counts["deduplicated"] += 1
            raise TaskAlreadyExistsError(
                f"Task {task.name} already exists: the name of a finished or deleted task "
                "stays reserved for a while."
            )
        stored = copy.copy(task)
        state.tasks[task.name] = stored
        self._push(state, stored)
        self._counts["tasks_created"] += 1
        self._counts["queued"] += 1
        return copy.copy(stored)

    def _push(self, state: _QueueState, task: TaskRecord) -> None:
        seq = next(self._seq)
        task.heap_seq = seq
        heapq.heappush(state.heap, (task.schedule_time_s, seq, task.name))

    def _drop(self, task: TaskRecord) -> None:
        """Account for a task leaving the store and reserve its name."""
        task.heap_seq = 0
        self._counts["queued"] -= 1
        if task.leased:
            task.leased = False
            self._counts["in_flight"] -= 1
        self._reserved[task.name] = time.monotonic() + self.reservation_s
        self._reserved.move_to_end(task.name)

    def _record(self, task: TaskRecord, result: AttemptResult) -> None:
        if result.http_status:
            task.response_count += 1
            if result.http_status < 500:
                task.execution_count += 1
        task.last_http_status = result.http_status
        if task.last_attempt is not None:
            task.last_attempt = replace(
                task.last_attempt,
                response_time_s=result.response_time_s,
                response_code=result.grpc_code,
                response_message=result.message,
            )

    def _prune_reservations(self, now_mono_s: float) -> None:
        reserved = self._reserved
        while reserved:
            name, expiry = next(iter(reserved.items()))
            if expiry > now_mono_s:
                break
            del reserved[name]

    @staticmethod
    def _next_due(state: _QueueState) -> float | None:
        heap, tasks = state.heap, state.tasks
        while heap:
            _, seq, name = heap[0]
            task = tasks.get(name)
            if task is not None and task.heap_seq == seq:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def _notify(self, ready: list[tuple[str, float]]) -> None:
        listener = self._listener
        if listener is None or not ready:
            return
        earliest: dict[str, float] = {}
        for queue_name, due_s in ready:
            if due_s < earliest.get(queue_name, float("inf")):
                earliest[queue_name] = due_s
        for queue_name, due_s in earliest.items():
            listener(queue_name, due_s)
