"""Validation of ``CreateTaskRequest`` messages and conversion of tasks to protobuf."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.headers import check_headers
from localcloud.tasks.model import HTTP_METHOD_POST, AttemptRecord, QueueConfig, TaskRecord
from localcloud.tasks.proto_time import (
    check_duration,
    check_timestamp,
    duration_s,
    set_duration,
    set_timestamp,
    timestamp_s,
)
from localcloud.tasks.queue_conversion import retry_from_pb
from localcloud.tasks.resource_names import check_queue_name, check_task_id, new_task_id
from localcloud.tasks.urls import check_host, check_url_text

_BODY_METHODS = frozenset({1, 4, 6})  # POST, PUT, PATCH
_VALID_METHODS = range(1, 8)  # POST .. OPTIONS

MAX_URL_LENGTH = 2083
DEFAULT_MAX_TASK_BYTES = 1024 * 1024  # 1 MiB, the quotas page's task size limit
DEFAULT_DISPATCH_DEADLINE_S = 600.0
MIN_DISPATCH_DEADLINE_S = 15.0
MAX_DISPATCH_DEADLINE_S = 1800.0
MAX_SCHEDULE_AHEAD_S = 30 * 24 * 3600.0
VIEW_BASIC = 1
VIEW_FULL = 2


def task_from_request(
    request: Any, queue: QueueConfig, now_s: float, max_task_bytes: int
) -> TaskRecord:
    """Validate a raw ``CreateTaskRequest`` for ``queue`` and return the new task.

    ``now_s`` is the current time in seconds since the epoch; ``max_task_bytes``
    is the largest accepted serialized task, in bytes.
    """
    parent = check_queue_name(request.parent)
    if not request.HasField("task"):
        raise InvalidArgumentError("CreateTaskRequest.task is required.")
    task = request.task
    name = _task_name(parent, task.name)
    size = task.ByteSize()
    if size > max_task_bytes:
        raise InvalidArgumentError(
            f"Task is {size} bytes; the maximum task size is {max_task_bytes} bytes."
        )
    kind = task.WhichOneof("message_type")
    if kind == "app_engine_http_request":
        raise InvalidArgumentError(
            "App Engine tasks are not supported by the emulator; set http_request."
        )
    if kind != "http_request":
        raise InvalidArgumentError("Task.http_request is required (with an http or https URL).")
    http = task.http_request
    _check_url(http.url)
    method = http.http_method or HTTP_METHOD_POST
    if method not in _VALID_METHODS:
        raise InvalidArgumentError(f"Unknown http_method {method}.")
    if http.body and method not in _BODY_METHODS:
        raise InvalidArgumentError("A request body is allowed only for POST, PUT and PATCH.")
    given = http.headers
    headers = {key: given[key] for key in given}  # dict(given) is slower
    check_headers(headers)
    if http.HasField("oauth_token"):
        raise InvalidArgumentError("oauth_token is not supported by the emulator; use oidc_token.")
    oidc_email = oidc_audience = ""
    if http.HasField("oidc_token"):
        oidc_email = http.oidc_token.service_account_email
        oidc_audience = http.oidc_token.audience
        if not oidc_email:
            raise InvalidArgumentError("oidc_token.service_account_email is required.")
    schedule_s = now_s
    if task.HasField("schedule_time"):
        check_timestamp("task.schedule_time", task.schedule_time)
        schedule_s = timestamp_s(task.schedule_time)
        if schedule_s > now_s + MAX_SCHEDULE_AHEAD_S:
            raise InvalidArgumentError("schedule_time must be at most 30 days in the future.")
    deadline_s = DEFAULT_DISPATCH_DEADLINE_S
    if task.HasField("dispatch_deadline"):
        check_duration("task.dispatch_deadline", task.dispatch_deadline)
        deadline_s = duration_s(task.dispatch_deadline)
        if not MIN_DISPATCH_DEADLINE_S <= deadline_s <= MAX_DISPATCH_DEADLINE_S:
            raise InvalidArgumentError(
                f"dispatch_deadline must be between 15s and 1800s (30 min), got {deadline_s}s."
            )
    retry = queue.retry
    if task.HasField("retry_config"):
        retry = retry_from_pb(task.retry_config, queue.retry)
    return TaskRecord(
        name=name,
        url=http.url,
        http_method=method,
        headers=headers,
        body=bytes(http.body),
        schedule_time_s=schedule_s,
        create_time_s=float(int(now_s)),
        dispatch_deadline_s=deadline_s,
        retry=retry,
        oidc_email=oidc_email,
        oidc_audience=oidc_audience,
    )


def _task_name(parent: str, name: str) -> str:
    if not name:
        return f"{parent}/tasks/{new_task_id()}"
    queue_name, sep, task_id = name.rpartition("/tasks/")
    if not sep:
        raise InvalidArgumentError(f"Invalid task name '{name}': expected {parent}/tasks/TASK_ID.")
    if queue_name != parent:
        raise InvalidArgumentError(
            f"Task name '{name}' is not in the queue named by parent '{parent}'."
        )
    check_task_id(task_id)
    return name


@functools.lru_cache(maxsize=256)  # the tasks of one fan-out share their URL
def _check_url(url: str) -> None:
    """Raise :class:`InvalidArgumentError` unless the dispatcher can send to ``url``."""
    field = "http_request.url"
    if not url:
        raise InvalidArgumentError(f"{field} is required.")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgumentError(f"{field} is longer than {MAX_URL_LENGTH} characters.")
    check_url_text(field, url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidArgumentError(f"{field} '{url}' is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"{field} '{url}' must be an absolute http:// or https:// URL with a host."
        )
    check_host(field, parts.hostname)


def task_to_pb(task: TaskRecord, view: int, task_cls: Any) -> Any:
    """Return ``task`` as a ``google.cloud.tasks.v2.Task`` message of ``task_cls``.

    The BASIC view (the default) omits the request body, as the real service does;
    ``view=VIEW_FULL`` includes it.
    """
    pb = task_cls()
    fill_task_pb(task, view, pb)
    return pb


def fill_task_pb(task: TaskRecord, view: int, pb: Any) -> None:
    """Set the empty ``Task`` message ``pb`` (say, a repeated field's new element) to ``task``.

    The parts tasks share (HTTP request but its body, dispatch deadline, view,
    schedule and create times) are copied from a message made once per
    combination: a BatchCreateTasks answer holds up to 100 tasks of one fan-out,
    created at one time.
    """
    full = view == VIEW_FULL
    task_cls: Any = type(pb)
    pb.CopyFrom(
        _shared_part(
            task_cls,
            full,
            task.url,
            task.http_method,
            tuple(task.headers.items()),
            task.oidc_email,
            task.oidc_audience,
            task.dispatch_deadline_s,
            task.schedule_time_s,
            task.create_time_s,
        )
    )
    pb.name = task.name
    if task.dispatch_count:
        pb.dispatch_count = task.dispatch_count
    if task.response_count:
        pb.response_count = task.response_count
    if full and task.body:
        pb.http_request.body = task.body
    if task.first_attempt is not None:
        set_timestamp(pb.first_attempt.dispatch_time, task.first_attempt.dispatch_time_s)
    if task.last_attempt is not None:
        _attempt_to_pb(task.last_attempt, pb.last_attempt)


@functools.lru_cache(maxsize=64)
def _shared_part(
    task_cls: Any,
    full: bool,
    url: str,
    http_method: int,
    headers: tuple[tuple[str, str], ...],
    oidc_email: str,
    oidc_audience: str,
    dispatch_deadline_s: float,
    schedule_time_s: float,
    create_time_s: float,
) -> Any:
    """Return a ``Task`` with only the fields tasks share set (copied from, never changed)."""
    pb = task_cls(view=VIEW_FULL if full else VIEW_BASIC)
    http = pb.http_request
    http.url = url
    http.http_method = http_method
    for key, value in headers:
        http.headers[key] = value
    if oidc_email:
        http.oidc_token.service_account_email = oidc_email
        if oidc_audience:
            http.oidc_token.audience = oidc_audience
    set_duration(pb.dispatch_deadline, dispatch_deadline_s)
    set_timestamp(pb.schedule_time, schedule_time_s)
    set_timestamp(pb.create_time, create_time_s)
    return pb


def _attempt_to_pb(attempt: AttemptRecord, pb: Any) -> None:
    set_timestamp(pb.schedule_time, attempt.schedule_time_s)
    set_timestamp(pb.dispatch_time, attempt.dispatch_time_s)
    if attempt.response_time_s is not None:
        set_timestamp(pb.response_time, attempt.response_time_s)
    if attempt.response_code is not None:
        pb.response_status.code = attempt.response_code
        pb.response_status.message = attempt.response_message
