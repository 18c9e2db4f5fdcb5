"""Validation of ``Queue`` and ``RetryConfig`` messages and conversion to and from queue configs.

Works on raw protobuf messages (``tasks_v2.Queue.pb()`` instances).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from localcloud.tasks import ratelimit
from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.model import QUEUE_STATE_RUNNING, QueueConfig
from localcloud.tasks.override import override_from_pb
from localcloud.tasks.proto_time import check_duration, duration_s, set_duration, set_timestamp
from localcloud.tasks.resource_names import check_location, check_queue_name
from localcloud.tasks.retry import RetryPolicy

# One dispatch in ~116 days: a slower queue would wait longer than a thread can (TIMEOUT_MAX).
MIN_DISPATCHES_PER_SECOND = 1e-7


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
