"""Worker configuration, read from environment variables with defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orders.settings import CloudSettings, env_int, env_str


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker needs: the shared cloud settings plus its own limits.

    ``max_body_bytes`` caps a task body (bytes).
    """

    cloud: CloudSettings = field(default_factory=CloudSettings)
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read the configuration from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        return cls(
            cloud=CloudSettings.from_env(env),
            max_body_bytes=env_int(env, "WORKER_MAX_BODY_BYTES", cls.max_body_bytes),
            log_level=env_str(env, "LOG_LEVEL", cls.log_level),
        )
