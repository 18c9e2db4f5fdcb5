"""Settings read from environment variables, each with a default.

Every service builds its configuration from :class:`CloudSettings` plus a few of
its own values; the readers below turn a bad value into a :class:`SettingsError`
that names the variable and what it expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from orders.errors import SettingsError
from orders.queue_group import MAX_QUEUE_COUNT, queue_ids

DEFAULT_PROJECT = "order-fanout-local"
N = TypeVar("N", int, float)


def env_str(environ: Mapping[str, str], name: str, default: str) -> str:
    """Return ``environ[name]`` stripped, or ``default`` when unset or blank."""
    value = environ.get(name, "").strip()
    return value or default


def env_int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """Return ``environ[name]`` as an integer of at least ``minimum``, or ``default``."""
    return _env_number(environ, name, default, minimum, int, "a whole number")


def env_float(environ: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """Return ``environ[name]`` as a float of at least ``minimum``, or ``default``."""
    return _env_number(environ, name, default, minimum, float, "a number")


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """Return ``environ[name]`` as a boolean (``true``/``false``, ``1``/``0``), or ``default``."""
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise SettingsError(f"{name}={raw!r} is not a boolean; set it to true or false")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _env_number(
    environ: Mapping[str, str], name: str, default: N, minimum: N, kind: type[N], expected: str
) -> N:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {expected}; set it to {expected}") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    return value


@dataclass(frozen=True)
class CloudSettings:
    """Where the queue, the worker and the emulators are; shared by both services.

    ``dispatch_deadline_s`` (seconds) is how long Cloud Tasks waits for the worker
    before abandoning and retrying a delivery; keep it below the worker's own
    request timeout. ``rpc_timeout_s`` (seconds) bounds each Cloud Tasks API call.
    ``queue_count`` is the size of the queue group (:mod:`orders.queue_group`).
    """

    project: str = DEFAULT_PROJECT
    location: str = "us-central1"
    queue: str = "order-actions"
    worker_url: str = "http://127.0.0.1:8081"
    invoker_email: str = f"tasks-invoker@{DEFAULT_PROJECT}.iam.gserviceaccount.com"
    dispatch_deadline_s: float = 60.0
    rpc_timeout_s: float = 30.0
    tasks_emulator_host: str = ""
    queue_count: int = 1

    @property
    def queue_path(self) -> str:
        """The full resource name of the queue named ``TASKS_QUEUE``."""
        return self.queue_path_of(self.queue)

    @property
    def queue_ids(self) -> tuple[str, ...]:
        """The ids of the queues of the group (just ``queue`` when ``queue_count`` is 1)."""
        return queue_ids(self.queue, self.queue_count)

    def queue_path_of(self, queue_id: str) -> str:
        """Return the full resource name of the queue ``queue_id`` in this location."""
        return f"projects/{self.project}/locations/{self.location}/queues/{queue_id}"

    @property
    def task_url(self) -> str:
        """The worker endpoint each task is delivered to."""
        return self.worker_url.rstrip("/") + "/tasks"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CloudSettings:
        """Read the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        project = env_str(env, "GOOGLE_CLOUD_PROJECT", DEFAULT_PROJECT)
        worker_url = env_str(env, "WORKER_URL", cls.worker_url)
        if not worker_url.startswith(("http://", "https://")):
            raise SettingsError(f"WORKER_URL={worker_url!r} must start with http:// or https://")
        deadline = env_float(env, "TASKS_DISPATCH_DEADLINE_SECONDS", cls.dispatch_deadline_s, 15.0)
        if deadline > 1800:
            raise SettingsError(
                f"TASKS_DISPATCH_DEADLINE_SECONDS={deadline} exceeds Cloud Tasks' 1800 s maximum"
            )
        return cls(
            project=project,
            location=env_str(env, "TASKS_LOCATION", cls.location),
            queue=env_str(env, "TASKS_QUEUE", cls.queue),
            worker_url=worker_url,
            invoker_email=env_str(
                env, "TASKS_INVOKER_EMAIL", f"tasks-invoker@{project}.iam.gserviceaccount.com"
            ),
            dispatch_deadline_s=deadline,
            rpc_timeout_s=env_float(env, "TASKS_RPC_TIMEOUT_SECONDS", cls.rpc_timeout_s, 1.0),
            tasks_emulator_host=env_str(env, "CLOUD_TASKS_EMULATOR_HOST", ""),
            queue_count=_queue_count(env),
        )


def _queue_count(environ: Mapping[str, str]) -> int:
    count = env_int(environ, "TASKS_QUEUE_COUNT", 1)
    if count > MAX_QUEUE_COUNT:
        raise SettingsError(
            f"TASKS_QUEUE_COUNT={count} is over {MAX_QUEUE_COUNT}, the most queues one group has"
        )
    return count
