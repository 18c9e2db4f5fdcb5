"""One delivery of a task by Cloud Tasks, as its ``X-CloudTasks-*`` headers describe it."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from worker.errors import BadDeliveryError, ForeignQueueError


class Headers(Protocol):
    """Case-insensitive request headers (werkzeug's ``Headers``, ``requests``' dict)."""

    def get(self, key: str, default: str) -> str:
        """Return the header's value, or ``default``."""


@dataclass(frozen=True)
class Delivery:
    """Queue, task name, retry count (0 on the first attempt) and execution count.

    ``execution_count`` counts the responses Cloud Tasks received for the task
    (5xx answers are not counted); ``retry_reason`` and ``previous_response``
    are only sent on retries.
    """

    queue_name: str
    task_name: str
    retry_count: int
    execution_count: int
    previous_response: str = ""
    retry_reason: str = ""

    @classmethod
    def from_headers(cls, headers: Headers, queues: str | Collection[str]) -> Delivery:
        """Parse the headers; refuse a delivery that is not from one of ``queues`` (queue ids)."""
        queue_name = headers.get("X-CloudTasks-QueueName", "").strip()
        if not queue_name:
            raise ForeignQueueError(
                "no X-CloudTasks-QueueName header: the request does not come from Cloud Tasks"
            )
        accepted = (queues,) if isinstance(queues, str) else queues
        if queue_name not in accepted:
            raise ForeignQueueError(
                f"queue {queue_name!r} is not this worker's queue: it takes {sorted(accepted)}"
            )
        task_name = headers.get("X-CloudTasks-TaskName", "").strip()
        if not task_name:
            raise BadDeliveryError("the X-CloudTasks-TaskName header is missing")
        return cls(
            queue_name=queue_name,
            task_name=task_name,
            retry_count=_count(headers, "X-CloudTasks-TaskRetryCount"),
            execution_count=_count(headers, "X-CloudTasks-TaskExecutionCount"),
            previous_response=headers.get("X-CloudTasks-TaskPreviousResponse", ""),
            retry_reason=headers.get("X-CloudTasks-TaskRetryReason", ""),
        )

    def is_last_attempt(self, max_attempts: int) -> bool:
        """Tell whether the queue will not retry this task again (``max_attempts`` -1: never)."""
        return max_attempts > 0 and self.retry_count + 1 >= max_attempts

    def log_fields(self) -> dict[str, Any]:
        """Return the fields every log line and ledger entry of this delivery carries."""
        return {
            "queueName": self.queue_name,
            "cloudTaskName": self.task_name,  # not taskName: LogRecord has one (3.12+)
            "retryCount": self.retry_count,
            "executionCount": self.execution_count,
        }


_COUNT = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() accepts "²"


def _count(headers: Headers, name: str) -> int:
    raw = headers.get(name, "0").strip() or "0"
    if not _COUNT.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise BadDeliveryError(
            f"header {name}={shown!r} is not a whole number of at most 18 ASCII digits"
        )
    return int(raw)
