"""Continuation tasks: how a run that reached its time budget carries on.

The run enqueues one task to its own ``POST /fanout/continue`` endpoint, named
from the run id and the next segment number, so a retried enqueue or a second
stop at the same point is refused as ``ALREADY_EXISTS`` and only one
continuation ever runs per segment.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from fanout.config import FanoutConfig
from fanout.enqueue import RETRYABLE
from fanout.errors import FanoutError

CONTINUE_PATH = "/fanout/continue"
RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,100}")


@dataclass(frozen=True)
class ContinuationRequest:
    """The body of a continuation task: which run, which segment comes next."""

    run_id: str
    segment: int

    def to_json(self) -> bytes:
        """Serialize to the task body."""
        return json.dumps({"runId": self.run_id, "segment": self.segment}).encode()

    @classmethod
    def from_json(cls, body: bytes) -> ContinuationRequest:
        """Parse a task body; raise :class:`FanoutError` saying what is wrong."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FanoutError(f"continuation body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FanoutError("continuation body must be an object with runId and segment")
        run_id, segment = data.get("runId"), data.get("segment")
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise FanoutError(f"continuation field 'runId' must be a run id, got {run_id!r}")
        if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
            raise FanoutError(f"continuation field 'segment' must be 1 or more, got {segment!r}")
        return cls(run_id, segment)


def continuation_task(
    config: FanoutConfig, request: ContinuationRequest, headers: Mapping[str, str] | None = None
) -> tasks_v2.Task:
    """Build the named task that delivers ``request`` to this service (``headers`` added)."""
    task_id = f"fanout-{request.run_id}-s{request.segment}"
    return tasks_v2.Task(
        name=f"{config.continuation_queue_path}/tasks/{task_id}",
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=config.fanout_url + CONTINUE_PATH,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=request.to_json(),
            oidc_token=tasks_v2.OidcToken(
                service_account_email=config.continuation_email,
                audience=config.fanout_url,
            ),
        ),
        # The continuation runs for the same budget as the first call, so its caller
        # (the queue) waits as long as Cloud Scheduler would; 1800 s is the API's maximum.
        dispatch_deadline=duration_pb2.Duration(seconds=int(min(config.attempt_deadline_s, 1800))),
    )


def enqueue_continuation(
    client: tasks_v2.CloudTasksClient,
    config: FanoutConfig,
    request: ContinuationRequest,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Create the continuation task (once), with ``headers`` added; return its name."""
    task = continuation_task(config, request, headers)
    with contextlib.suppress(gexc.AlreadyExists):  # created by an earlier attempt of this stop
        client.create_task(
            parent=config.continuation_queue_path,
            task=task,
            retry=gretry.Retry(predicate=RETRYABLE, timeout=config.cloud.rpc_timeout_s * 3),
            timeout=config.cloud.rpc_timeout_s,
        )
    return str(task.name)
