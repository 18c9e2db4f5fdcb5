"""Worker configuration, read from environment variables with defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orders.auth import AuthSettings
from orders.errors import SettingsError
from orders.queue_group import accepted_queue_ids
from orders.settings import CloudSettings, env_bool, env_float, env_int, env_str

DEFAULT_LEASE_S = 10.0  # how long a claim lives after its last renewal, seconds
HEARTBEATS_PER_LEASE = 3  # renewals per lease by default: two may fail before it runs out
DEFAULT_WAREHOUSE_URL = "http://127.0.0.1:8090/notifications"


def _default_auth(cloud: CloudSettings) -> AuthSettings:
    return AuthSettings(audience=cloud.worker_url, allowed_emails=frozenset({cloud.invoker_email}))


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker needs: the shared cloud settings, who may call, and its own limits.

    ``max_body_bytes`` caps a task body (bytes). ``lease_s`` (seconds) is how long
    a delivery's claim on an action lives after its last renewal: a crashed
    delivery's claim frees itself that long after the crash. ``heartbeat_s``
    (seconds, shorter than the lease) is how often a running action's claim is
    renewed. ``delivery_timeout_s`` (seconds) bounds each outbox POST and
    ``rpc_timeout_s`` (seconds) each Firestore call. ``max_attempts`` is the
    queue's ``max_attempts`` (-1 unlimited): the delivery whose retry count
    reaches it is the last. ``warehouse_url`` receives warehouse notifications;
    ``mailer_url``, when set, receives confirmation e-mails (unset: they stay in
    the outbox for a mail relay). ``claim_before_post``: an action that POSTs
    (an outbox effect) first writes its claim, so a duplicate delivery arriving
    while it runs is answered 409 instead of POSTing too, at one more commit
    per such action; off, its claim is written with its outcome and the
    ``Idempotency-Key`` alone keeps the receiver from acting twice.
    """

    cloud: CloudSettings = field(default_factory=CloudSettings)
    auth: AuthSettings | None = None  # None: verify for cloud.worker_url / cloud.invoker_email
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float = 0.0  # 0: lease_s / HEARTBEATS_PER_LEASE
    warehouse_url: str = DEFAULT_WAREHOUSE_URL
    mailer_url: str = ""
    delivery_timeout_s: float = 10.0
    rpc_timeout_s: float = 10.0
    max_attempts: int = 100
    claim_before_post: bool = False

    def __post_init__(self) -> None:
        """Fill the defaults that derive from other settings; check the lease and heartbeat."""
        if self.auth is None:
            object.__setattr__(self, "auth", _default_auth(self.cloud))
        if not self.heartbeat_s:
            object.__setattr__(self, "heartbeat_s", self.lease_s / HEARTBEATS_PER_LEASE)
        if not 0 < self.heartbeat_s < self.lease_s:
            raise SettingsError(
                f"WORKER_HEARTBEAT_SECONDS={self.heartbeat_s} must be positive and shorter than "
                f"WORKER_LEASE_SECONDS={self.lease_s}, or a live delivery would lose its claim"
            )

    @property
    def accepted_queues(self) -> frozenset[str]:
        """The queue ids deliveries may come from: the group's queues (``TASKS_QUEUE_COUNT``)."""
        return accepted_queue_ids(self.cloud.queue, self.cloud.queue_count)

    @property
    def auth_settings(self) -> AuthSettings:
        """The caller verification settings (always set after construction)."""
        assert self.auth is not None
        return self.auth

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read the configuration from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        cloud = CloudSettings.from_env(env)
        max_attempts = env_int(env, "TASKS_MAX_ATTEMPTS", cls.max_attempts, minimum=-1)
        if max_attempts == 0:
            raise SettingsError("TASKS_MAX_ATTEMPTS=0 is not a queue setting; use -1 for unlimited")
        return cls(
            cloud=cloud,
            auth=AuthSettings.from_env(
                env,
                default_audience=cloud.worker_url,
                default_allowed_emails=(cloud.invoker_email,),
            ),
            max_body_bytes=env_int(env, "WORKER_MAX_BODY_BYTES", cls.max_body_bytes),
            log_level=env_str(env, "LOG_LEVEL", cls.log_level),
            lease_s=env_float(env, "WORKER_LEASE_SECONDS", cls.lease_s, 0.1),
            heartbeat_s=env_float(env, "WORKER_HEARTBEAT_SECONDS", 0.0, 0.0),
            warehouse_url=env_str(env, "WAREHOUSE_URL", cls.warehouse_url),
            mailer_url=env_str(env, "MAILER_URL", ""),
            delivery_timeout_s=env_float(
                env, "WORKER_DELIVERY_TIMEOUT_SECONDS", cls.delivery_timeout_s, 0.1
            ),
            rpc_timeout_s=env_float(env, "WORKER_RPC_TIMEOUT_SECONDS", cls.rpc_timeout_s, 0.1),
            max_attempts=max_attempts,
            claim_before_post=env_bool(env, "WORKER_CLAIM_BEFORE_POST", cls.claim_before_post),
        )
