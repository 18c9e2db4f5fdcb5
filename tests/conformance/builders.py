"""Builders of task requests shared by the emulator's tests."""

from __future__ import annotations

import datetime
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2


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
