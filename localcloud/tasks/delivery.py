"""One HTTP attempt of a task: the Cloud Tasks headers, the request, the outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import requests
from requests.adapters import HTTPAdapter

from localcloud.tasks.model import AttemptResult, TaskRecord

USER_AGENT = "Google-Cloud-Tasks"
_METHODS = {1: "POST", 2: "GET", 3: "HEAD", 4: "PUT", 5: "DELETE", 6: "PATCH", 7: "OPTIONS"}
_OVERRIDDEN = frozenset({"user-agent", "host", "content-length"})

# google.rpc.Code numbers
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 5, 7, 8, 9
ABORTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 10, 12, 13, 14, 16
_HTTP_TO_GRPC = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    409: ABORTED,
    429: RESOURCE_EXHAUSTED,
    499: CANCELLED,
    500: INTERNAL,
    501: UNIMPLEMENTED,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}

TokenSource = Callable[[str, str], str]
"""Returns an OIDC ID token for ``(audience, service_account_email)``."""


def http_to_grpc_code(status: int) -> int:
    """Map an HTTP status to the ``google.rpc.Code`` recorded on the task's attempt."""
    if 200 <= status < 300:
        return OK
    if status in _HTTP_TO_GRPC:
        return _HTTP_TO_GRPC[status]
    if 400 <= status < 500:
        return FAILED_PRECONDITION
    return INTERNAL if status >= 500 else UNKNOWN


def parse_retry_after_s(value: str | None, now_s: float) -> float | None:
    """Return a ``Retry-After`` header (delta seconds or HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_s)


def new_session(pool_size: int = 4) -> requests.Session:
    """Return a Session for one dispatch thread: no default headers, no proxies or netrc.

    ``trust_env`` is off so local targets are never sent through a proxy and no
    netrc lookup costs time on each request.
    """
    session = requests.Session()
    session.trust_env = False
    session.headers.clear()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def build_headers(task: TaskRecord, queue_id: str, token: str | None) -> dict[str, str]:
    """Return the request headers of the next attempt of ``task``.

    The task's own headers are kept (no Content-Type is added); the Cloud Tasks
    headers are set, the retry headers only when this attempt is a retry.
    ``task.dispatch_count`` already counts this attempt.
    """
    headers = {
        key: value
        for key, value in task.headers.items()
        if key.lower() not in _OVERRIDDEN
        and not key.lower().startswith("x-cloudtasks-")
        and (token is None or key.lower() != "authorization")
    }
    retry_count = task.dispatch_count - 1
    headers["User-Agent"] = USER_AGENT
    headers["X-CloudTasks-QueueName"] = queue_id
    headers["X-CloudTasks-TaskName"] = task.task_id
    headers["X-CloudTasks-TaskRetryCount"] = str(retry_count)
    headers["X-CloudTasks-TaskExecutionCount"] = str(task.execution_count)
    headers["X-CloudTasks-TaskETA"] = f"{task.schedule_time_s:.6f}"
    if retry_count > 0:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(task.last_http_status)
        headers["X-CloudTasks-TaskRetryReason"] = task.last_retry_reason or "unknown"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def retry_reason(result: AttemptResult) -> str:
    """Return the ``X-CloudTasks-TaskRetryReason`` value describing a failed attempt."""
    if result.http_status:
        return f"HTTP {result.http_status}"
    return "DEADLINE_EXCEEDED" if result.grpc_code == DEADLINE_EXCEEDED else "UNAVAILABLE"


def deliver(
    session: requests.Session, task: TaskRecord, queue_id: str, tokens: TokenSource | None
) -> AttemptResult:
    """Send one attempt of ``task`` and return what happened; never raises.

    The timeout is the task's ``dispatch_deadline_s`` (seconds), applied to
    connecting and to waiting for the response.
    """
    token = None
    try:
        if task.oidc_email and tokens is not None:
            token = tokens(task.oidc_audience or task.url, task.oidc_email)
        headers = build_headers(task, queue_id, token)
        response = session.request(
            _METHODS.get(task.http_method, "POST"),
            task.url,
            data=task.body or None,
            headers=headers,
            timeout=task.dispatch_deadline_s,
            allow_redirects=False,
        )
    except requests.Timeout:
        return AttemptResult(0, DEADLINE_EXCEEDED, "dispatch_deadline exceeded", time.time())
    except requests.RequestException as exc:
        return AttemptResult(0, UNAVAILABLE, f"request failed: {exc}"[:500], time.time())
    except Exception as exc:  # never let one task kill a dispatch thread
        return AttemptResult(0, INTERNAL, f"dispatch error: {exc!r}"[:500], time.time())
    now_s = time.time()
    status = response.status_code
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after_s(response.headers.get("Retry-After"), now_s)
    response.close()
    return AttemptResult(status, http_to_grpc_code(status), f"HTTP {status}", now_s, retry_after)
