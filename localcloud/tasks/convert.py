"""Validation and conversion between Cloud Tasks v2 protobuf messages and the records.

Works on raw protobuf messages (``tasks_v2.Task.pb()`` instances), which are much
cheaper than proto-plus wrappers on the dispatch path.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from google.protobuf import json_format

from localcloud.tasks import ratelimit
from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.model import QUEUE_STATE_RUNNING, QueueConfig
from localcloud.tasks.override import override_from_pb
from localcloud.tasks.retry import RetryPolicy

_LOCATION_RE = re.compile(r"projects/[A-Za-z0-9\-:.]+/locations/[A-Za-z0-9\-]+")
_QUEUE_ID_RE = re.compile(r"[A-Za-z0-9\-]{1,100}")
_TASK_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")

MAX_TASK_ID_LENGTH = 500
MAX_URL_LENGTH = 2083
DEFAULT_MAX_TASK_BYTES = 1024 * 1024  # 1 MiB, the quotas page's task size limit
DEFAULT_DISPATCH_DEADLINE_S = 600.0
MIN_DISPATCH_DEADLINE_S = 15.0
MAX_DISPATCH_DEADLINE_S = 1800.0
MAX_SCHEDULE_AHEAD_S = 30 * 24 * 3600.0
VIEW_BASIC = 1
MIN_TIMESTAMP_S = -62_135_596_800  # 0001-01-01T00:00:00Z, seconds since the epoch
MAX_TIMESTAMP_S = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_S = 315_576_000_000  # 10,000 years, a Duration's range in seconds
MAX_NANOS = 999_999_999
# One dispatch in ~116 days: a slower queue would wait longer than a thread can (TIMEOUT_MAX).
MIN_DISPATCHES_PER_SECOND = 1e-7
VIEW_FULL = 2


# -- names ----------------------------------------------------------------------


def check_location(parent: str) -> str:
    """Return ``parent`` if it is ``projects/PROJECT_ID/locations/LOCATION_ID``."""
    if not _LOCATION_RE.fullmatch(parent):
        raise InvalidArgumentError(
            f"Invalid location '{parent}': expected projects/PROJECT_ID/locations/LOCATION_ID."
        )
    return parent


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a well-formed full queue name."""
    location, sep, queue_id = name.rpartition("/queues/")
    if not sep or not _LOCATION_RE.fullmatch(location) or not _QUEUE_ID_RE.fullmatch(queue_id):
        raise InvalidArgumentError(
            f"Invalid queue name '{name}': expected projects/PROJECT_ID/locations/LOCATION_ID/"
            "queues/QUEUE_ID, QUEUE_ID of 1-100 letters, numbers or hyphens."
        )
    return name


def check_task_id(task_id: str) -> str:
    """Return ``task_id`` if it has only ``[A-Za-z0-9_-]`` and at most 500 characters."""
    if not task_id:
        raise InvalidArgumentError("Task id is empty.")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidArgumentError(
            f"Task id is {len(task_id)} characters long; the maximum is {MAX_TASK_ID_LENGTH}."
        )
    if not _TASK_ID_RE.fullmatch(task_id):
        bad = sorted({c for c in task_id if not _TASK_ID_RE.fullmatch(c)})
        raise InvalidArgumentError(
            f"Task id '{task_id}' contains invalid characters {''.join(bad)!r}: only letters, "
            "numbers, hyphens (-) and underscores (_) are allowed."
        )
    return task_id


def check_task_name(name: str) -> str:
    """Return ``name`` if it is a well-formed full task name."""
    queue_name, sep, task_id = name.rpartition("/tasks/")
    if not sep:
        raise InvalidArgumentError(
            f"Invalid task name '{name}': expected projects/PROJECT_ID/locations/LOCATION_ID/"
            "queues/QUEUE_ID/tasks/TASK_ID."
        )
    check_queue_name(queue_name)
    check_task_id(task_id)
    return name


def new_task_id() -> str:
    """Return a random numeric task id, as the real service generates."""
    return str(secrets.randbelow(10**19)).rjust(19, "0")


# -- time -----------------------------------------------------------------------


def timestamp_s(ts: Any) -> float:
    """Return a ``google.protobuf.Timestamp`` as seconds since the epoch."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def duration_s(d: Any) -> float:
    """Return a ``google.protobuf.Duration`` in seconds."""
    return float(d.seconds) + float(d.nanos) / 1e9


def check_timestamp(field: str, ts: Any) -> None:
    """Raise :class:`InvalidArgumentError` naming ``field`` unless ``ts`` is a valid Timestamp.

    Valid: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos in
    [0, 999999999]; anything else cannot be written back as JSON (RFC 3339).
    """
    if not MIN_TIMESTAMP_S <= ts.seconds <= MAX_TIMESTAMP_S:
        raise InvalidArgumentError(
            f"{field}.seconds {ts.seconds} is outside 0001-01-01 to 9999-12-31 "
            f"([{MIN_TIMESTAMP_S}, {MAX_TIMESTAMP_S}])."
        )
    if not 0 <= ts.nanos <= MAX_NANOS:
        raise InvalidArgumentError(f"{field}.nanos {ts.nanos} must be in [0, {MAX_NANOS}].")


def check_duration(field: str, d: Any) -> None:
    """Raise :class:`InvalidArgumentError` naming ``field`` unless ``d`` is a valid Duration.

    Valid: at most 10,000 years either way, nanos in [-999999999, 999999999] of
    the same sign as seconds.
    """
    if abs(d.seconds) > MAX_DURATION_S:
        raise InvalidArgumentError(
            f"{field}.seconds {d.seconds} is outside [-{MAX_DURATION_S}, {MAX_DURATION_S}]."
        )
    if abs(d.nanos) > MAX_NANOS or (d.seconds and d.nanos and (d.seconds > 0) != (d.nanos > 0)):
        raise InvalidArgumentError(
            f"{field}.nanos {d.nanos} must be in [-{MAX_NANOS}, {MAX_NANOS}] and have the "
            "sign of seconds."
        )


def set_timestamp(ts: Any, seconds: float) -> None:
    """Set a ``Timestamp`` to ``seconds`` since the epoch, truncated to microseconds.

    Times beyond a Timestamp's range (a retry backed off past year 9999) are
    clamped to it, so every task can always be read back.
    """
    seconds = min(max(seconds, MIN_TIMESTAMP_S), MAX_TIMESTAMP_S)
    micros = int(seconds * 1_000_000)
    ts.seconds, rest = divmod(micros, 1_000_000)
    ts.nanos = rest * 1000


def set_duration(d: Any, seconds: float) -> None:
    """Set a ``Duration`` to ``seconds``, truncated to microseconds."""
    micros = round(seconds * 1_000_000)
    d.seconds, rest = divmod(micros, 1_000_000)
    d.nanos = rest * 1000


# -- queues ---------------------------------------------------------------------


def retry_from_pb(pb: Any, base: RetryPolicy) -> RetryPolicy:
    """Return a ``RetryConfig`` message as a policy, unset (zero) fields taken from ``base``.

    ``max_attempts`` 0 and ``max_doublings`` 0 count as unset (proto3 scalars
    have no presence); durations count as unset when the field is absent.
    """
    max_attempts = pb.max_attempts or base.max_attempts
    if max_attempts < -1:
        raise InvalidArgumentError(
            f"max_attempts must be -1 (unlimited) or positive, got {max_attempts}."
        )
    if pb.max_doublings < 0:
        raise InvalidArgumentError(f"max_doublings must not be negative, got {pb.max_doublings}.")
    has = pb.HasField
    for name in ("min_backoff", "max_backoff", "max_retry_duration"):
        if has(name):
            check_duration(f"retry_config.{name}", getattr(pb, name))
    policy = RetryPolicy(
        max_attempts=max_attempts,
        min_backoff_s=duration_s(pb.min_backoff) if has("min_backoff") else base.min_backoff_s,
        max_backoff_s=duration_s(pb.max_backoff) if has("max_backoff") else base.max_backoff_s,
        max_doublings=pb.max_doublings or base.max_doublings,
        max_retry_duration_s=(
            duration_s(pb.max_retry_duration)
            if has("max_retry_duration")
            else base.max_retry_duration_s
        ),
    )
    if min(policy.min_backoff_s, policy.max_backoff_s, policy.max_retry_duration_s) < 0:
        raise InvalidArgumentError("RetryConfig durations must not be negative.")
    if policy.min_backoff_s > policy.max_backoff_s:
        raise InvalidArgumentError(
            f"min_backoff ({policy.min_backoff_s}s) must not exceed max_backoff "
            f"({policy.max_backoff_s}s)."
        )
    return policy


def queue_from_pb(parent: str, queue: Any, state: int = QUEUE_STATE_RUNNING) -> QueueConfig:
    """Validate a ``CreateQueueRequest``'s parent and queue; fill in the defaults.

    ``max_burst_size`` is output only: it is derived from the rate by
    :func:`localcloud.tasks.ratelimit.burst_size_for_rate`.
    """
    check_location(parent)
    check_queue_name(queue.name)
    if not queue.name.startswith(parent + "/queues/"):
        raise InvalidArgumentError(f"Queue name '{queue.name}' is not under parent '{parent}'.")
    if queue.HasField("app_engine_routing_override"):
        raise InvalidArgumentError(
            "app_engine_routing_override is not supported by the emulator (HTTP targets only)."
        )
    http_target = ""
    if queue.HasField("http_target") and queue.http_target.ByteSize():
        override_from_pb(queue.http_target)  # validates
        http_target = json_format.MessageToJson(queue.http_target, indent=None)
    limits = queue.rate_limits
    rate = limits.max_dispatches_per_second or ratelimit.DEFAULT_MAX_DISPATCHES_PER_SECOND
    if not MIN_DISPATCHES_PER_SECOND <= rate <= ratelimit.MAX_DISPATCHES_PER_SECOND:
        raise InvalidArgumentError(
            f"rate_limits.max_dispatches_per_second must be in [{MIN_DISPATCHES_PER_SECOND}, "
            f"500], got {rate}."
        )
    concurrent = limits.max_concurrent_dispatches or ratelimit.DEFAULT_MAX_CONCURRENT_DISPATCHES
    if not 0 < concurrent <= ratelimit.MAX_CONCURRENT_DISPATCHES:
        raise InvalidArgumentError(
            f"max_concurrent_dispatches must be in [1, 5000], got {concurrent}."
        )
    ratio = queue.stackdriver_logging_config.sampling_ratio
    if not 0.0 <= ratio <= 1.0:
        raise InvalidArgumentError(
            f"stackdriver_logging_config.sampling_ratio must be in [0, 1], got {ratio}."
        )
    return QueueConfig(
        name=queue.name,
        max_dispatches_per_second=float(rate),
        max_burst_size=ratelimit.burst_size_for_rate(rate),
        max_concurrent_dispatches=concurrent,
        retry=retry_from_pb(queue.retry_config, RetryPolicy()),
        state=state,
        log_sampling_ratio=ratio,
        http_target=http_target,
    )


def queue_to_pb(config: QueueConfig, queue_cls: Any) -> Any:
    """Return ``config`` as a ``google.cloud.tasks.v2.Queue`` message of ``queue_cls``."""
    q = queue_cls(name=config.name, state=config.state)
    q.rate_limits.max_dispatches_per_second = config.max_dispatches_per_second
    q.rate_limits.max_burst_size = config.max_burst_size
    q.rate_limits.max_concurrent_dispatches = config.max_concurrent_dispatches
    retry_to_pb(config.retry, q.retry_config)
    if config.purge_time_s:
        set_timestamp(q.purge_time, config.purge_time_s)
    if config.http_target:
        json_format.Parse(config.http_target, q.http_target)
    if config.log_sampling_ratio:
        q.stackdriver_logging_config.sampling_ratio = config.log_sampling_ratio
    return q


def retry_to_pb(policy: RetryPolicy, pb: Any) -> None:
    """Fill a ``RetryConfig`` message from ``policy``."""
    pb.max_attempts = policy.max_attempts
    pb.max_doublings = policy.max_doublings
    set_duration(pb.min_backoff, policy.min_backoff_s)
    set_duration(pb.max_backoff, policy.max_backoff_s)
    set_duration(pb.max_retry_duration, policy.max_retry_duration_s)
