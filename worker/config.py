"""Worker configuration, read from environment variables with defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from orders.auth import AuthSettings
from orders.errors import SettingsError
from orders.queue_group import accepted_queue_ids
from orders.settings import CloudSettings, env_float, env_int, env_str

LEASE_MARGIN_S = 30.0  # how much longer than the dispatch deadline a claim lives by default
DEFAULT_WAREHOUSE_URL = "http://127.0.0.1:8090/notifications"


def _default_auth(cloud: CloudSettings) -> AuthSettings:
    return AuthSettings(audience=cloud.worker_url, allowed_emails=frozenset({cloud.invoker_email}))


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker needs: the shared cloud settings, who may call, and its own limits.

    ``max_body_bytes`` caps a task body (bytes). ``lease_s`` (seconds) is how long
    a delivery's claim on an action lives; it must outlive the dispatch deadline,
    after which Cloud Tasks may deliver the task again while the first delivery
    still runs. ``delivery_timeout_s`` (seconds) bounds each outbox POST and
    ``rpc_timeout_s`` (seconds) each Firestore call. ``max_attempts`` is the
    queue's ``max_attempts`` (-1 unlimited): the delivery whose retry count
    reaches it is the last. ``warehouse_url`` receives warehouse notifications;
    ``mailer_url``, when set, receives confirmation e-mails (unset: they stay in
    the outbox for a mail relay).
    """

    cloud: CloudSettings = field(default_factory=CloudSettings)
    auth: AuthSettings | None = None  # None: verify for cloud.worker_url / cloud.invoker_email
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    lease_s: float = 0.0  # 0: the dispatch deadline plus LEASE_MARGIN_S
    warehouse_url: str = DEFAULT_WAREHOUSE_URL
    mailer_url: str = ""
    delivery_timeout_s: float = 10.0
    rpc_timeout_s: float = 10.0
    max_attempts: int = 100

    def __post_init__(self) -> None:
        """Fill the defaults that derive from the cloud settings; check the lease."""
        if self.auth is None:
            object.__setattr__(self, "auth", _default_auth(self.cloud))
        if not self.lease_s:
            object.__setattr__(self, "lease_s", self.cloud.dispatch_deadline_s + LEASE_MARGIN_S)
        if self.lease_s <= self.cloud.dispatch_deadline_s:
            raise SettingsError(
                f"WORKER_LEASE_SECONDS={self.lease_s} must exceed the dispatch deadline "
                f"({self.cloud.dispatch_deadline_s} s), or a redelivery could run beside a live one"
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

    def firestore_rpc(self) -> dict[str, Any]:
        """Return the retry and timeout of every Firestore call: ``rpc_timeout_s`` in all.

        UNAVAILABLE and INTERNAL are retried: every write of the worker carries a
        precondition, so a write that did land is refused the second time, and the
        ledger tells what happened. Refusals and conflicts are the caller's to handle.
        """
        retry = Retry(
            predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
            initial=0.1,
            maximum=1.0,
            timeout=self.rpc_timeout_s,
        )
        return {"retry": retry, "timeout": self.rpc_timeout_s}

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
            lease_s=env_float(env, "WORKER_LEASE_SECONDS", 0.0),
            warehouse_url=env_str(env, "WAREHOUSE_URL", cls.warehouse_url),
            mailer_url=env_str(env, "MAILER_URL", ""),
            delivery_timeout_s=env_float(
                env, "WORKER_DELIVERY_TIMEOUT_SECONDS", cls.delivery_timeout_s, 0.1
            ),
            rpc_timeout_s=env_float(env, "WORKER_RPC_TIMEOUT_SECONDS", cls.rpc_timeout_s, 0.1),
            max_attempts=max_attempts,
        )
