"""Resource names of the Cloud Tasks API: locations, queues, tasks; their checks and new ids."""

from __future__ import annotations

import functools
import re
import secrets

from localcloud.tasks.errors import InvalidArgumentError

_LOCATION_RE = re.compile(r"projects/[A-Za-z0-9\-:.]+/locations/[A-Za-z0-9\-]+")
_QUEUE_ID_RE = re.compile(r"[A-Za-z0-9\-]{1,100}")
_TASK_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
MAX_TASK_ID_LENGTH = 500


def check_location(parent: str) -> str:
    """Return ``parent`` if it is ``projects/PROJECT_ID/locations/LOCATION_ID``."""
    if not _LOCATION_RE.fullmatch(parent):
        raise InvalidArgumentError(
            f"Invalid location '{parent}': expected projects/PROJECT_ID/locations/LOCATION_ID."
        )
    return parent


@functools.lru_cache(maxsize=256)  # every request names a queue; a batch, up to 101 times
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
