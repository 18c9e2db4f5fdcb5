"""The console's settings, read from environment variables, each with a default.

- ``GOOGLE_CLOUD_PROJECT``, ``TASKS_LOCATION``, ``TASKS_QUEUE``,
  ``FIRESTORE_EMULATOR_HOST``, ``CLOUD_TASKS_EMULATOR_HOST``: as for the services
  (:class:`orders.settings.CloudSettings`); every queue of the location is shown.
- ``FANOUT_URL``: the fanout service, called to trigger a run (default empty:
  the trigger button is hidden).
- ``CONSOLE_TRIGGER_AS``: the service account whose ID token a triggered run
  carries, impersonated (default empty: the console's own; ``deploy.sh`` sets
  Scheduler's account, which the fanout allows already).
- ``CONSOLE_PAGE_SIZE``: rows per page of tasks, runs and orders (default 50).
- ``CONSOLE_REFRESH_SECONDS``: how often open pages refresh themselves, seconds
  (default 3).
- ``CONSOLE_TRIGGER_TIMEOUT_SECONDS``: how long a triggered run's first
  segment is waited for, seconds (default 300).
- ``CONSOLE_METRICS_TIMEOUT_SECONDS``: how long a Cloud Monitoring read of the
  queues' attempt rates may take, seconds (default 2); the reading is kept for
  the refresh period.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orders.settings import CloudSettings, env_float, env_int, env_str

MAX_PAGE_SIZE = 1000  # Cloud Tasks' ListTasks maximum


@dataclass(frozen=True)
class ConsoleConfig:
    """Where the queues and Firestore are, the fanout to trigger, and paging."""

    cloud: CloudSettings = field(default_factory=CloudSettings)
    fanout_url: str = ""
    trigger_as: str = ""
    page_size: int = 50
    refresh_s: float = 3.0
    trigger_timeout_s: float = 300.0
    metrics_timeout_s: float = 2.0
    log_level: str = "INFO"

    @property
    def location_path(self) -> str:
        """``projects/P/locations/L``, the parent of the queues shown."""
        return f"projects/{self.cloud.project}/locations/{self.cloud.location}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleConfig:
        """Read the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        return cls(
            cloud=CloudSettings.from_env(env),
            fanout_url=env_str(env, "FANOUT_URL", "").rstrip("/"),
            trigger_as=env_str(env, "CONSOLE_TRIGGER_AS", ""),
            page_size=min(env_int(env, "CONSOLE_PAGE_SIZE", cls.page_size), MAX_PAGE_SIZE),
            refresh_s=env_float(env, "CONSOLE_REFRESH_SECONDS", cls.refresh_s, 0.5),
            trigger_timeout_s=env_float(
                env, "CONSOLE_TRIGGER_TIMEOUT_SECONDS", cls.trigger_timeout_s, 1.0
            ),
            metrics_timeout_s=env_float(
                env, "CONSOLE_METRICS_TIMEOUT_SECONDS", cls.metrics_timeout_s, 0.1
            ),
            log_level=env_str(env, "LOG_LEVEL", cls.log_level),
        )
