"""Where the conformance tests run (the emulator or real Cloud Tasks), and its queues."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import duration_pb2

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUER = "https://accounts.google.com"
_ids = itertools.count(1)
_DURATIONS = frozenset({"min_backoff", "max_backoff", "max_retry_duration"})


def seconds(value: float) -> duration_pb2.Duration:
    """Return ``value`` seconds as a Duration."""
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


@dataclass
class Cloud:
    """Where the conformance tests run: clients, location and what differs per backend."""

    client: tasks_v2.CloudTasksClient
    beta: tasks_v2beta3.CloudTasksClient
    location: str
    real: bool
    certs_url: str
    issuer_url: str
    invoker_email: str
    wait_s: float  # how long to poll for an asynchronous effect, seconds
    queues: list[str] = field(default_factory=list)

    def make_queue(self, **settings: Any) -> tasks_v2.Queue:
        """Create a uniquely named queue; keyword settings go to rate_limits / retry_config.

        Durations (``min_backoff``, ``max_backoff``, ``max_retry_duration``) are seconds.
        """
        name = f"{self.location}/queues/conf-{uuid.uuid4().hex[:8]}-{next(_ids)}"
        queue: dict[str, Any] = {"name": name}
        rate = {k: settings.pop(k) for k in list(settings) if "dispatch" in k}
        if rate:
            queue["rate_limits"] = rate
        if settings:
            queue["retry_config"] = {
                k: (seconds(v) if k in _DURATIONS else v) for k, v in settings.items()
            }
        created = self.client.create_queue(parent=self.location, queue=queue)
        self.queues.append(name)
        return created
