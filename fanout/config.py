"""Fanout configuration, read from environment variables with defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orders.settings import CloudSettings, env_int, env_str


@dataclass(frozen=True)
class FanoutConfig:
    """What the fanout needs: the shared cloud settings plus paging and concurrency.

    ``page_size`` is orders read per Firestore query; ``batches_in_flight`` is how
    many BatchCreateTasks calls (100 tasks each) run at once.
    """

    cloud: CloudSettings = field(default_factory=CloudSettings)
    page_size: int = 300
    batches_in_flight: int = 8
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FanoutConfig:
        """Read the configuration from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        return cls(
            cloud=CloudSettings.from_env(env),
            page_size=env_int(env, "FANOUT_PAGE_SIZE", cls.page_size),
            batches_in_flight=env_int(env, "FANOUT_BATCHES_IN_FLIGHT", cls.batches_in_flight),
            log_level=env_str(env, "LOG_LEVEL", cls.log_level),
        )
