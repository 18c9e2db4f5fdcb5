"""Queues as the Cloud Tasks API reports them: limits, state, statistics; pause, resume, purge.

Statistics (tasks, in flight, executions in the last minute, the effective rate,
the oldest task's arrival) exist only in the v2beta3 ``Queue``, read with a
``read_mask`` naming ``stats``; the actions go through v2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import field_mask_pb2

from console.errors import NotFoundError

READ_MASK = field_mask_pb2.FieldMask(
    paths=["name", "state", "rate_limits", "retry_config", "stats"]
)
SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class QueueView:
    """One queue: configured limits, state and what its statistics say now.

    Rates are per second; ``dispatches_per_s`` is the last minute's executions
    over 60 s; ``enforced_rate`` is the API's ``effective_execution_rate`` (the
    rate the queue dispatches at now, which may be below the configured one).
    A statistic the API did not report is None.
    """

    name: str
    state: str
    max_dispatches_per_second: float
    max_burst_size: int
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff_s: float
    max_backoff_s: float
    tasks: int | None
    in_flight: int | None
    dispatches_per_s: float | None
    enforced_rate: float | None
    oldest_age_s: float | None

    @property
    def queue_id(self) -> str:
        """The queue's short id (the last part of its name)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def waiting(self) -> int | None:
        """Tasks in the queue not being dispatched right now."""
        if self.tasks is None:
            return None
        return max(0, self.tasks - (self.in_flight or 0))

    @property
    def paused(self) -> bool:
        """Whether the queue is paused (it keeps its tasks but dispatches none)."""
        return self.state == "PAUSED"


def queue_view(queue: tasks_v2beta3.Queue, now_s: float | None = None) -> QueueView:
    """Return the view of a v2beta3 queue read with :data:`READ_MASK`."""
    raw = tasks_v2beta3.Queue.pb(queue)
    limits, retry, stats = raw.rate_limits, raw.retry_config, raw.stats
    has_stats = raw.HasField("stats")
    oldest: float | None = None
    if has_stats and stats.HasField("oldest_estimated_arrival_time"):
        arrival = stats.oldest_estimated_arrival_time
        oldest = max(0.0, (now_s or time.time()) - (arrival.seconds + arrival.nanos / 1e9))
    return QueueView(
        name=raw.name,
        state=tasks_v2beta3.Queue.State(raw.state).name,
        max_dispatches_per_second=limits.max_dispatches_per_second,
        max_burst_size=limits.max_burst_size,
        max_concurrent_dispatches=limits.max_concurrent_dispatches,
        max_attempts=retry.max_attempts,
        min_backoff_s=retry.min_backoff.seconds + retry.min_backoff.nanos / 1e9,
        max_backoff_s=retry.max_backoff.seconds + retry.max_backoff.nanos / 1e9,
        tasks=int(stats.tasks_count) if has_stats else None,
        in_flight=int(stats.concurrent_dispatches_count) if has_stats else None,
        dispatches_per_s=(
            stats.executed_last_minute_count / SECONDS_PER_MINUTE if has_stats else None
        ),
        enforced_rate=stats.effective_execution_rate if has_stats else None,
        oldest_age_s=oldest,
    )


class QueueBoard:
    """Reads queues with their statistics and pauses, resumes or purges them."""

    def __init__(
        self,
        tasks: tasks_v2.CloudTasksClient,
        stats: tasks_v2beta3.CloudTasksClient,
        location_path: str,
    ) -> None:
        """Use ``tasks`` (v2) for actions and ``stats`` (v2beta3) for reading."""
        self._tasks = tasks
        self._stats = stats
        self.location_path = location_path

    def path(self, queue_id: str) -> str:
        """Return the full name of queue ``queue_id`` in this location."""
        return f"{self.location_path}/queues/{queue_id}"

    def list(self) -> list[QueueView]:
        """Return every queue of the location, with statistics."""
        request = tasks_v2beta3.ListQueuesRequest(parent=self.location_path, read_mask=READ_MASK)
        return [queue_view(queue) for queue in self._stats.list_queues(request=request)]

    def get(self, queue_id: str) -> QueueView:
        """Return one queue with statistics (:class:`NotFoundError` when there is none)."""
        request = tasks_v2beta3.GetQueueRequest(name=self.path(queue_id), read_mask=READ_MASK)
        try:
            return queue_view(self._stats.get_queue(request=request))
        except gexc.NotFound:
            raise NotFoundError(f"there is no queue {queue_id!r} in {self.location_path}") from None

    def pause(self, queue_id: str) -> None:
        """Pause the queue: it keeps its tasks and dispatches none until resumed."""
        self._tasks.pause_queue(name=self.path(queue_id))

    def resume(self, queue_id: str) -> None:
        """Resume dispatching."""
        self._tasks.resume_queue(name=self.path(queue_id))

    def purge(self, queue_id: str) -> None:
        """Delete every task of the queue (Cloud Tasks may take up to a minute)."""
        self._tasks.purge_queue(name=self.path(queue_id))
