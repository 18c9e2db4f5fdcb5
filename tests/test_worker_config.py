"""Worker settings and Cloud Tasks header parsing: pure logic."""

from __future__ import annotations

import pytest

from orders.auth import GOOGLE_CERTS_URL, GOOGLE_ISSUERS
from orders.errors import SettingsError
from worker.config import WorkerConfig
from worker.delivery import Delivery
from worker.errors import BadDeliveryError, ForeignQueueError


def test_defaults_verify_the_queue_invoker_for_the_worker_url() -> None:
    config = WorkerConfig.from_env({"GOOGLE_CLOUD_PROJECT": "p", "WORKER_URL": "https://w.run.app"})
    auth = config.auth_settings
    assert auth.audience == "https://w.run.app"
    assert auth.allowed_emails == {"tasks-invoker@p.iam.gserviceaccount.com"}
    assert (auth.issuers, auth.certs_url, auth.disabled) == (
        GOOGLE_ISSUERS,
        GOOGLE_CERTS_URL,
        False,
    )
    assert (config.lease_s, config.heartbeat_s) == (10.0, 10.0 / 3)  # seconds
    assert (config.max_attempts, config.mailer_url) == (100, "")
    assert config.claim_before_post is False  # the Idempotency-Key guards the receiver


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("OFF", False)])
def test_claiming_before_posting_is_a_boolean_setting(raw: str, expected: bool) -> None:
    config = WorkerConfig.from_env({"WORKER_CLAIM_BEFORE_POST": raw})
    assert config.claim_before_post is expected


def test_a_setting_that_is_not_a_boolean_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match=r"WORKER_CLAIM_BEFORE_POST='sometimes' is not a bool"):
        WorkerConfig.from_env({"WORKER_CLAIM_BEFORE_POST": "sometimes"})


def test_the_heartbeat_must_beat_within_the_lease() -> None:
    env = {"WORKER_LEASE_SECONDS": "5", "WORKER_HEARTBEAT_SECONDS": "5"}
    with pytest.raises(SettingsError, match=r"WORKER_HEARTBEAT_SECONDS=5\.0 must be"):
        WorkerConfig.from_env(env)
    config = WorkerConfig.from_env({**env, "WORKER_HEARTBEAT_SECONDS": "1"})
    assert (config.lease_s, config.heartbeat_s) == (5.0, 1.0)
    # A lease shorter than the dispatch deadline is fine: the heartbeat keeps it.
    short = WorkerConfig.from_env({"TASKS_DISPATCH_DEADLINE_SECONDS": "120"})
    assert short.lease_s == 10.0
    with pytest.raises(SettingsError, match="TASKS_MAX_ATTEMPTS"):
        WorkerConfig.from_env({"TASKS_MAX_ATTEMPTS": "0"})
    assert WorkerConfig.from_env({"TASKS_MAX_ATTEMPTS": "-1"}).max_attempts == -1


def test_delivery_headers() -> None:
    headers = {
        "X-CloudTasks-QueueName": "q",
        "X-CloudTasks-TaskName": "abc",
        "X-CloudTasks-TaskRetryCount": "4",
        "X-CloudTasks-TaskExecutionCount": "2",
        "X-CloudTasks-TaskRetryReason": "HTTP 503",
    }
    delivery = Delivery.from_headers(headers, "q")
    assert (delivery.task_name, delivery.retry_count, delivery.execution_count) == ("abc", 4, 2)
    assert delivery.retry_reason == "HTTP 503"
    assert delivery.is_last_attempt(5) and not delivery.is_last_attempt(6)
    assert not delivery.is_last_attempt(-1)
    with pytest.raises(ForeignQueueError):
        Delivery.from_headers(headers, "other")
    with pytest.raises(ForeignQueueError):
        Delivery.from_headers({}, "q")
    with pytest.raises(BadDeliveryError):
        Delivery.from_headers({**headers, "X-CloudTasks-TaskRetryCount": "-1"}, "q")
