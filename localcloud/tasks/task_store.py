"""The interface of queue and task state, used by the gRPC service and the dispatcher.

:class:`localcloud.tasks.sqlite_task_store.SqliteTaskStore` implements it in a SQLite file
(or in memory). Every method is atomic: name de-duplication in particular happens
under one lock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple

from localcloud.tasks.errors import TasksEmulatorError
from localcloud.tasks.model import AttemptResult, QueueConfig, TaskRecord

DEFAULT_RESERVATION_S = 3600.0

ReadyListener = Callable[[str, float], None]
"""Called as ``listener(queue_name, due_time_s)`` after a task becomes scheduled."""

COUNTER_KEYS = (
    "tasks_created",
    "deduplicated",
    "dispatches",
    "retries",
    "succeeded",
    "exhausted",
    "deleted",
    "in_flight",
    "queued",
)


class QueueCounts(NamedTuple):
    """A queue's live tasks and the earliest schedule time among them (epoch seconds)."""

    tasks: int
    oldest_schedule_s: float | None


class TaskStore(ABC):
    """Persistent state of queues and tasks; all methods are thread-safe and atomic."""

    @abstractmethod
    def set_ready_listener(self, listener: ReadyListener | None) -> None:
        """Register the callback told when a task is (re)scheduled."""

    @abstractmethod
    def get_setting(self, key: str) -> bytes | None:
        """Return an emulator setting kept with the state (e.g. the OIDC key), or None."""

    @abstractmethod
    def put_setting(self, key: str, value: bytes) -> None:
        """Keep an emulator setting with the state, replacing any earlier value."""

    @abstractmethod
    def create_queue(self, config: QueueConfig) -> None:
        """Add a queue; raise :class:`QueueAlreadyExistsError` if its name exists."""

    @abstractmethod
    def put_queue(self, config: QueueConfig) -> bool:
        """Create or replace a queue's config; return True when it was created."""

    @abstractmethod
    def purge_queue(self, name: str) -> QueueConfig:
        """Delete every task of a queue (names stay reserved); return the updated queue."""

    @abstractmethod
    def queue_counts(self, name: str) -> QueueCounts:
        """Return a queue's task count and oldest schedule time."""

    @abstractmethod
    def get_queue(self, name: str) -> QueueConfig:
        """Return a queue's config; raise :class:`QueueNotFoundError` if unknown."""

    @abstractmethod
    def list_queues(self, parent: str | None = None) -> list[QueueConfig]:
        """Return the queues under ``parent`` (``projects/P/locations/L``), or all."""

    @abstractmethod
    def delete_queue(self, name: str) -> None:
        """Delete a queue and its tasks (their names stay reserved)."""

    @abstractmethod
    def add_tasks(self, tasks: Sequence[TaskRecord]) -> list[TaskRecord | TasksEmulatorError]:
        """Add tasks in order, atomically; per task return it as stored or the error it raised."""

    def add_task(self, task: TaskRecord) -> TaskRecord:
        """Add one task; raise :class:`TaskAlreadyExistsError` if the name is taken."""
        (result,) = self.add_tasks([task])
        if isinstance(result, TasksEmulatorError):
            raise result
        return result

    @abstractmethod
    def get_task(self, name: str) -> TaskRecord:
        """Return a copy of a live task; raise :class:`TaskNotFoundError` otherwise."""

    @abstractmethod
    def list_tasks(
        self, queue_name: str, after: str, limit: int
    ) -> tuple[list[TaskRecord], str | None]:
        """Return up to ``limit`` live tasks named after ``after``, and the last name if more."""

    @abstractmethod
    def delete_task(self, name: str) -> None:
        """Delete a live task, reserving its name; raise :class:`TaskNotFoundError`."""

    @abstractmethod
    def lease_due(
        self, queue_name: str, now_s: float, limit: int
    ) -> tuple[list[TaskRecord], float | None]:
        """Lease up to ``limit`` tasks due at ``now_s`` for dispatch.

        Each leased task's ``dispatch_count`` is incremented and its attempt
        recorded. Returns copies of the leased tasks and the schedule time of the
        next task not leased (None when there is none).
        """

    @abstractmethod
    def lease_task(self, name: str, now_s: float) -> TaskRecord | None:
        """Lease one task now whatever its schedule (RunTask); None if already in flight."""

    @abstractmethod
    def finish(self, name: str, result: AttemptResult, outcome: str) -> None:
        """Record the last attempt and delete the task (``succeeded`` or ``exhausted``)."""

    @abstractmethod
    def reschedule(
        self, name: str, result: AttemptResult, schedule_time_s: float, retry_reason: str
    ) -> None:
        """Record a failed attempt and schedule the next one at ``schedule_time_s``."""

    @abstractmethod
    def release_leases(self) -> int:
        """Return leased tasks to their queues (after a stop or restart); return how many."""

    @abstractmethod
    def reset_reservations(self) -> None:
        """Forget every reserved name of finished or deleted tasks."""

    @abstractmethod
    def counters(self) -> dict[str, int]:
        """Return the counters named in :data:`COUNTER_KEYS`."""

    @abstractmethod
    def put_operation(self, name: str, data: bytes, keep: int) -> None:
        """Store a serialized long-running operation, keeping only the newest ``keep``."""

    @abstractmethod
    def get_operation(self, name: str) -> bytes | None:
        """Return a stored operation's serialized form, or None."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources (it is unusable afterwards)."""
