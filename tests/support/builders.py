"""Builders of task requests (for the official client) and task records (for the store)."""

from __future__ import annotations

import datetime
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from localcloud.tasks.model import TaskRecord
from localcloud.tasks.retry import RetryPolicy


def http_task(name: str, url: str, **fields: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"url": url}
    for key in ("body", "headers", "http_method", "oidc_token"):
        if key in fields:
            request[key] = fields.pop(key)
    return {"name": name, "http_request": request, **fields}


def later(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds))
    return ts


def gone(client: tasks_v2.CloudTasksClient, name: str) -> bool:
    """True when the task ``name`` no longer exists (finished, exhausted or deleted)."""
    try:
        client.get_task(name=name)
    except exceptions.NotFound:
        return True
    return False


def make_task(url: str = "http://127.0.0.1:9/x", **fields: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "name": "projects/p/locations/l/queues/q/tasks/t",
        "url": url,
        "http_method": 1,
        "headers": {},
        "body": b"",
        "schedule_time_s": 1_700_000_000.25,
        "create_time_s": 1_700_000_000.0,
        "dispatch_deadline_s": 600.0,
        "retry": RetryPolicy(),
        "dispatch_count": 1,
    }
    values.update(fields)
    return TaskRecord(**values)
