"""Queues declared at start-up, from a YAML file or an environment variable.

The document is a list of queues, or a mapping with a ``queues`` list (and
optionally ``project`` and ``location`` for short queue ids)::

    project: order-fanout-local        # default: $GOOGLE_CLOUD_PROJECT or order-fanout-local
    location: us-central1              # default: $TASKS_LOCATION or us-central1
    queues:
      - order-actions                  # a queue id alone: every setting at its default
      - name: slow                     # or a full projects/P/locations/L/queues/Q name
        rateLimits: {maxDispatchesPerSecond: 50, maxConcurrentDispatches: 10}
        retryConfig: {maxAttempts: 5, minBackoff: 0.1s, maxBackoff: 10s, maxDoublings: 3}

Each queue entry has the fields of the v2 ``Queue`` message (camelCase or
snake_case); durations are ``"0.1s"`` strings or plain numbers of seconds. The
same YAML text (``[order-actions, {name: slow, ...}]``, or ``a,b``) can be given
in ``TASKS_EMULATOR_QUEUES``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from localcloud.tasks.errors import TasksEmulatorError
from localcloud.tasks.model import QueueConfig
from localcloud.tasks.queue_conversion import queue_from_pb
from localcloud.tasks.queues import Queue

DEFAULT_PROJECT = "order-fanout-local"
DEFAULT_LOCATION = "us-central1"
_DURATION_KEYS = frozenset(
    {"minBackoff", "maxBackoff", "maxRetryDuration", "min_backoff", "max_backoff"}
    | {"max_retry_duration"}
)


class QueueConfigError(TasksEmulatorError):
    """Raised when a queue declaration (file or environment) is malformed or invalid."""


def load_queues(path: str | Path | None = None, text: str | None = None) -> list[QueueConfig]:
    """Return the queues declared in the YAML file ``path`` and in the YAML ``text``.

    Either may be None or empty. Raises :class:`QueueConfigError` naming the
    source and the entry at fault.
    """
    queues: list[QueueConfig] = []
    if path:
        try:
            content = Path(path).read_text()
        except OSError as exc:
            raise QueueConfigError(f"Cannot read the queue file {path}: {exc}") from exc
        queues += parse_queues(content, str(path))
    if text and text.strip():
        queues += parse_queues(text, "TASKS_EMULATOR_QUEUES")
    return queues


def parse_queues(text: str, source: str) -> list[QueueConfig]:
    """Return the queues of one YAML document; ``source`` names it in errors."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise QueueConfigError(f"{source} is not valid YAML: {exc}") from exc
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT
    location = os.environ.get("TASKS_LOCATION") or DEFAULT_LOCATION
    if isinstance(document, dict):
        project = str(document.get("project") or project)
        location = str(document.get("location") or location)
        document = document.get("queues") or []
    if isinstance(document, str):
        document = [part.strip() for part in document.split(",") if part.strip()]
    if not isinstance(document, list):
        raise QueueConfigError(f"{source}: expected a list of queues or a 'queues:' list.")
    parent = f"projects/{project}/locations/{location}"
    return [_queue(entry, parent, f"{source}: queue #{i + 1}") for i, entry in enumerate(document)]


def _queue(entry: Any, default_parent: str, where: str) -> QueueConfig:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not entry.get("name"):
        raise QueueConfigError(f"{where}: each queue needs a name.")
    entry = _with_duration_strings(entry)
    name = str(entry["name"])
    if "/" not in name:
        name = f"{default_parent}/queues/{name}"
    entry["name"] = name
    try:
        message = json_format.ParseDict(entry, Queue())
        return queue_from_pb(name.rsplit("/queues/", 1)[0], message)
    except (json_format.ParseError, TasksEmulatorError) as exc:
        raise QueueConfigError(f"{where} ({name}): {exc}") from exc


def _with_duration_strings(value: Any) -> Any:
    """Return ``value`` with plain numbers of seconds under duration keys as ``"Ns"``."""
    if isinstance(value, dict):
        return {
            key: (
                f"{item}s"
                if key in _DURATION_KEYS and isinstance(item, int | float)
                else _with_duration_strings(item)
            )
            for key, item in value.items()
        }
    return value
