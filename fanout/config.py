"""Fanout configuration, read from environment variables with defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orders.errors import SettingsError
from orders.settings import CloudSettings, env_float, env_int, env_str

SCHEDULER_ATTEMPT_DEADLINE_S = 180.0  # Cloud Scheduler's default for HTTP targets
DEADLINE_MARGIN_S = 30.0  # time kept back from the caller's deadline to answer


@dataclass(frozen=True)
class FanoutConfig:
    """What the fanout needs: the shared cloud settings plus paging, pacing and run limits.

    - ``page_size``: orders read per Firestore query.
    - ``batches_in_flight``: BatchCreateTasks calls (100 tasks each) at once.
    - ``max_creates_per_s``: a fixed cap on task creations per second into each
      queue of the group; 0 means none, and the ramp paces creations instead.
    - ``ramp_start_per_s``: creations per second each queue's 500/50/5 ramp starts
      at (:mod:`fanout.ramp`); 0 turns the ramp off (no pacing without a cap).
    - ``max_task_bytes``: the queue's task size limit; bigger tasks fail their order.
    - ``time_budget_s``: seconds a run (or continuation) works before it checkpoints
      and hands over to a continuation; 0 means no budget. Defaults to the caller's
      ``attempt_deadline_s`` less a margin of DEADLINE_MARGIN_S.
    - ``lease_s``: seconds a run's lease lasts between renewals (one per page); a
      crashed run blocks others for at most this long.
    - ``fanout_url``: this service's own base URL, the target of continuation tasks;
      without it a run that reaches its budget just stops and the next one resumes.
    - ``continuation_queue``/``continuation_invoker_email``: where continuation
      tasks go and the service account whose OIDC token they carry.
    - ``scheduler_invoker_email``: Cloud Scheduler's service account, allowed to call.
    """

    cloud: CloudSettings = field(default_factory=CloudSettings)
    page_size: int = 300
    batches_in_flight: int = 8
    max_creates_per_s: float = 0.0
    ramp_start_per_s: float = 500.0
    max_task_bytes: int = 1024 * 1024
    attempt_deadline_s: float = SCHEDULER_ATTEMPT_DEADLINE_S
    time_budget_s: float = SCHEDULER_ATTEMPT_DEADLINE_S - DEADLINE_MARGIN_S
    lease_s: float = 120.0
    fanout_url: str = ""
    continuation_queue: str = ""
    continuation_invoker_email: str = ""
    scheduler_invoker_email: str = ""
    log_level: str = "INFO"

    @property
    def continuation_email(self) -> str:
        """The service account continuation tasks' tokens name (default: the task invoker)."""
        return self.continuation_invoker_email or self.cloud.invoker_email

    @property
    def continuation_queue_path(self) -> str:
        """The full name of the queue continuation tasks go to (default: the task queue)."""
        queue = self.continuation_queue or self.cloud.queue
        return f"projects/{self.cloud.project}/locations/{self.cloud.location}/queues/{queue}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FanoutConfig:
        """Read the configuration from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        cloud = CloudSettings.from_env(env)
        deadline = env_float(env, "FANOUT_ATTEMPT_DEADLINE_SECONDS", cls.attempt_deadline_s, 15.0)
        budget = env_float(
            env, "FANOUT_TIME_BUDGET_SECONDS", max(deadline - DEADLINE_MARGIN_S, 10.0), 0.0
        )
        if budget >= deadline:
            raise SettingsError(
                f"FANOUT_TIME_BUDGET_SECONDS={budget} must be below "
                f"FANOUT_ATTEMPT_DEADLINE_SECONDS={deadline}, or the caller gives up first"
            )
        fanout_url = env_str(env, "FANOUT_URL", "")
        if fanout_url and not fanout_url.startswith(("http://", "https://")):
            raise SettingsError(f"FANOUT_URL={fanout_url!r} must start with http:// or https://")
        return cls(
            cloud=cloud,
            page_size=env_int(env, "FANOUT_PAGE_SIZE", cls.page_size),
            batches_in_flight=env_int(env, "FANOUT_BATCHES_IN_FLIGHT", cls.batches_in_flight),
            max_creates_per_s=env_float(env, "FANOUT_MAX_CREATES_PER_SECOND", 0.0),
            ramp_start_per_s=env_float(
                env, "FANOUT_RAMP_START_PER_SECOND", cls.ramp_start_per_s, 0.0
            ),
            max_task_bytes=env_int(env, "FANOUT_MAX_TASK_BYTES", cls.max_task_bytes),
            attempt_deadline_s=deadline,
            time_budget_s=budget,
            lease_s=env_float(env, "FANOUT_LEASE_SECONDS", cls.lease_s, 5.0),
            fanout_url=fanout_url.rstrip("/"),
            continuation_queue=env_str(env, "FANOUT_CONTINUATION_QUEUE", ""),
            continuation_invoker_email=env_str(
                env, "FANOUT_CONTINUATION_INVOKER_EMAIL", cloud.invoker_email
            ),
            scheduler_invoker_email=env_str(
                env,
                "SCHEDULER_INVOKER_EMAIL",
                f"scheduler-invoker@{cloud.project}.iam.gserviceaccount.com",
            ),
            log_level=env_str(env, "LOG_LEVEL", cls.log_level),
        )
