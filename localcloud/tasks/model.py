"""Plain records of queues, tasks and attempts (protobuf-free, cheap to copy).

Times are wall-clock seconds since the Unix epoch (``time.time()``), durations are
seconds.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from localcloud.tasks.retry import RetryPolicy

QUEUE_STATE_RUNNING = 1  # google.cloud.tasks.v2.Queue.State.RUNNING
QUEUE_STATE_PAUSED = 2  # google.cloud.tasks.v2.Queue.State.PAUSED

HTTP_METHOD_POST = 1  # google.cloud.tasks.v2.HttpMethod.POST


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's settings with every default filled in.

    ``max_dispatches_per_second`` is a rate in dispatches per second,
    ``max_burst_size`` is in tokens (dispatches).
    """

    name: str
    max_dispatches_per_second: float
    max_burst_size: int
    max_concurrent_dispatches: int
    retry: RetryPolicy
    state: int = QUEUE_STATE_RUNNING
    purge_time_s: float = 0.0
    log_sampling_ratio: float = 0.0
    http_target: str = ""  # the queue's HttpTarget overrides as protobuf JSON, "" for none

    @property
    def queue_id(self) -> str:
        """The short queue id (last path segment of :attr:`name`)."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One dispatch attempt; ``response_code`` is a gRPC code, ``None`` until answered."""

    schedule_time_s: float
    dispatch_time_s: float
    response_time_s: float | None = None
    response_code: int | None = None
    response_message: str = ""


@dataclass(slots=True)
class TaskRecord:
    """A task and its dispatch state.

    ``dispatch_deadline_s`` is in seconds. ``execution_count`` counts responses
    that were not 5xx (the ``X-CloudTasks-TaskExecutionCount`` header).
    ``last_http_status`` is 0 when the previous attempt got no HTTP response.
    """

    name: str
    url: str
    http_method: int
    headers: dict[str, str]
    body: bytes
    schedule_time_s: float
    create_time_s: float
    dispatch_deadline_s: float
    retry: RetryPolicy
    oidc_email: str = ""
    oidc_audience: str = ""
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0
    first_attempt: AttemptRecord | None = None
    last_attempt: AttemptRecord | None = None
    last_http_status: int = 0
    last_retry_reason: str = ""
    leased: bool = False

    @property
    def queue_name(self) -> str:
        """The full name of the task's queue."""
        return self.name.rsplit("/tasks/", 1)[0]

    @property
    def task_id(self) -> str:
        """The short task id (last path segment of :attr:`name`)."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the dispatcher observed for one attempt.

    ``http_status`` is 0 when no HTTP response arrived (connection error or
    ``dispatch_deadline`` exceeded). ``retry_after_s`` is the server's
    ``Retry-After`` in seconds, if any.
    """

    http_status: int
    grpc_code: int
    message: str
    response_time_s: float
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """True for any 2xx status."""
        return 200 <= self.http_status < 300


# -- serialization (the durable store keeps records as JSON) -------------------------

_TASK_COLUMNS = frozenset({"name", "body", "schedule_time_s", "leased"})
_TASK_JSON_FIELDS = tuple(f.name for f in fields(TaskRecord) if f.name not in _TASK_COLUMNS)
_KEYED_FIELDS = tuple(name for name in _TASK_JSON_FIELDS if name != "headers")  # hashable values


def queue_to_json(config: QueueConfig) -> str:
    """Return ``config`` as a JSON document."""
    return json.dumps(asdict(config))


def queue_from_json(text: str) -> QueueConfig:
    """Return the :class:`QueueConfig` of a :func:`queue_to_json` document."""
    values = json.loads(text)
    values["retry"] = RetryPolicy(**values["retry"])
    return QueueConfig(**values)


def task_to_json(task: TaskRecord) -> str:
    """Return ``task`` as JSON, without its name, body, schedule time and lease flag.

    Those four are columns of their own in the durable store. Every created
    task is written through here, and the tasks created in one second with the
    same request (a fan-out's) have the same JSON: it is made once for them.
    """
    values = tuple([getattr(task, name) for name in _KEYED_FIELDS])
    return _record_json(values, tuple(task.headers.items()))


@functools.lru_cache(maxsize=256)
def _record_json(values: tuple[Any, ...], headers: tuple[tuple[str, str], ...]) -> str:
    """Return the JSON of a task record whose fields other than headers are ``values``."""
    record: dict[str, Any] = dict(zip(_KEYED_FIELDS, values, strict=True))
    record["headers"] = dict(headers)
    record["retry"] = _shallow(record["retry"])
    record["first_attempt"] = _shallow(record["first_attempt"])
    record["last_attempt"] = _shallow(record["last_attempt"])
    return json.dumps(record)


def _shallow(record: RetryPolicy | AttemptRecord | None) -> dict[str, Any] | None:
    """Return a flat record as a dict (``dataclasses.asdict`` deep-copies, much slower)."""
    if record is None:
        return None
    return {f.name: getattr(record, f.name) for f in fields(record)}


def task_from_row(
    name: str, body: bytes, schedule_time_s: float, leased: bool, text: str
) -> TaskRecord:
    """Return the :class:`TaskRecord` stored as columns plus a :func:`task_to_json` document."""
    values: dict[str, Any] = json.loads(text)
    values["retry"] = RetryPolicy(**values["retry"])
    for key in ("first_attempt", "last_attempt"):
        if values[key] is not None:
            values[key] = AttemptRecord(**values[key])
    return TaskRecord(
        name=name, body=bytes(body), schedule_time_s=schedule_time_s, leased=leased, **values
    )
