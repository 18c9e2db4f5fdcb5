"""Conformance: how tasks are delivered — headers, OIDC, retries, deadlines, rate limits."""

from __future__ import annotations

import itertools

import google.auth.transport.requests
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.oauth2 import id_token
from google.protobuf import duration_pb2, field_mask_pb2

from tests.support.builders import gone, http_task
from tests.support.conformance_cloud import Cloud
from tests.support.receiver import Receiver, Reply, wait_for


def test_headers_on_first_attempt_and_task_headers_kept(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    plain = cloud.client.create_task(
        parent=queue.name,
        task=http_task(
            f"{queue.name}/tasks/plain",
            target.url("/plain"),
            body=b"raw",
            headers={"X-Custom": "v"},
        ),
    )
    cloud.client.create_task(
        parent=queue.name,
        task=http_task(
            f"{queue.name}/tasks/json",
            target.url("/json"),
            body=b"{}",
            headers={"Content-Type": "application/json"},
        ),
    )
    wait_for(lambda: len(target.at("/plain")) == 1 and len(target.at("/json")) == 1, cloud.wait_s)
    (hit,) = target.at("/plain")
    h = hit.headers
    assert hit.method == "POST" and hit.body == b"raw"
    assert h["user-agent"] == "Google-Cloud-Tasks"
    assert h["x-cloudtasks-queuename"] == queue.name.rsplit("/", 1)[-1]
    assert h["x-cloudtasks-taskname"] == "plain"
    assert h["x-cloudtasks-taskretrycount"] == "0"
    assert h["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(h["x-cloudtasks-tasketa"]) == pytest.approx(
        plain.schedule_time.timestamp(), abs=1.0
    )
    assert h["x-custom"] == "v"
    assert "x-cloudtasks-taskpreviousresponse" not in h
    assert "x-cloudtasks-taskretryreason" not in h
    assert "authorization" not in h
    if not cloud.real:
        assert "content-type" not in h  # Google may add one to a bodied request
    assert target.at("/json")[0].headers["content-type"] == "application/json"


def test_oidc_token_claims_verify_with_the_issuer_certs(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    audience = "https://worker.example"
    oidc = {"service_account_email": cloud.invoker_email, "audience": audience}
    cloud.client.create_task(
        parent=queue.name, task=http_task("", target.url("/aud?x=1"), oidc_token=oidc)
    )
    default = {"service_account_email": cloud.invoker_email}
    cloud.client.create_task(
        parent=queue.name, task=http_task("", target.url("/default"), oidc_token=default)
    )
    wait_for(lambda: target.at("/aud") != [] and target.at("/default") != [], cloud.wait_s)
    request = google.auth.transport.requests.Request()
    token = target.at("/aud")[0].headers["authorization"].removeprefix("Bearer ")
    claims = id_token.verify_token(token, request, audience=audience, certs_url=cloud.certs_url)
    assert claims["iss"] == cloud.issuer_url
    assert claims["email"] == cloud.invoker_email and claims["email_verified"] is True
    assert claims["sub"] and claims["azp"]
    assert claims["exp"] > claims["iat"]
    with pytest.raises(ValueError):
        id_token.verify_token(token, request, audience="https://other", certs_url=cloud.certs_url)
    default_token = target.at("/default")[0].headers["authorization"].removeprefix("Bearer ")
    claims = id_token.verify_token(
        default_token, request, audience=target.url("/default"), certs_url=cloud.certs_url
    )
    assert claims["aud"] == target.url("/default")


def test_every_non_2xx_is_retried_with_backoff_and_retry_headers(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue(min_backoff=0.1, max_backoff=1.0)
    target.scripts["/flaky"] = [Reply(500), Reply(404), Reply(204)]
    name = f"{queue.name}/tasks/flaky"
    cloud.client.create_task(parent=queue.name, task=http_task(name, target.url("/flaky")))
    wait_for(lambda: len(target.at("/flaky")) == 3 and gone(cloud.client, name), cloud.wait_s)
    hits = target.at("/flaky")
    assert [h.headers["x-cloudtasks-taskretrycount"] for h in hits] == ["0", "1", "2"]
    # 5xx answers are not counted as executions; the 404 is.
    assert [h.headers["x-cloudtasks-taskexecutioncount"] for h in hits] == ["0", "0", "1"]
    assert [h.headers["x-cloudtasks-taskpreviousresponse"] for h in hits[1:]] == ["500", "404"]
    assert all(h.headers["x-cloudtasks-taskretryreason"] for h in hits[1:])
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(hits)]
    assert gaps[0] >= 0.1 * 0.9 and gaps[1] >= 0.2 * 0.9  # b·2^(n-1)


def test_max_attempts_counts_the_first_and_deletes_the_exhausted_task(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue(max_attempts=3, min_backoff=0.1, max_backoff=0.1)
    target.scripts["/down"] = [Reply(500)] * 10
    task = http_task(f"{queue.name}/tasks/down", target.url("/down"))
    cloud.client.create_task(parent=queue.name, task=task)
    wait_for(lambda: gone(cloud.client, task["name"]), cloud.wait_s)
    # A task created after, in the same queue, arriving proves the queue moved on.
    cloud.client.create_task(parent=queue.name, task=http_task("", target.url("/after")))
    target.wait_at("/after", 1, cloud.wait_s)
    assert len(target.at("/down")) == 3
    with pytest.raises(exceptions.AlreadyExists):
        cloud.client.create_task(parent=queue.name, task=task)


def test_retrying_stops_only_when_both_limits_are_reached(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue(
        max_attempts=2, max_retry_duration=2.0, min_backoff=0.1, max_backoff=0.2
    )
    target.scripts["/both"] = [Reply(503)] * 100
    name = f"{queue.name}/tasks/both"
    cloud.client.create_task(parent=queue.name, task=http_task(name, target.url("/both")))
    wait_for(lambda: gone(cloud.client, name), cloud.wait_s)
    hits = target.at("/both")
    assert len(hits) > 2  # max_attempts reached first: the duration kept it going
    assert hits[-1].at_s - hits[0].at_s >= 2.0 * 0.9


def test_a_response_slower_than_dispatch_deadline_is_abandoned_and_retried(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue(min_backoff=0.1, max_backoff=0.1)
    target.scripts["/slow"] = [Reply(200, delay_s=18.0)]
    deadline = duration_pb2.Duration(seconds=15)
    name = f"{queue.name}/tasks/slow"
    cloud.client.create_task(
        parent=queue.name,
        task=http_task(name, target.url("/slow"), dispatch_deadline=deadline),
    )
    wait_for(lambda: len(target.at("/slow")) == 2, 15 + cloud.wait_s)
    first, second = target.at("/slow")
    assert second.at_s - first.at_s >= 15 * 0.95
    assert second.headers["x-cloudtasks-taskretrycount"] == "1"
    wait_for(lambda: gone(cloud.client, name), cloud.wait_s)


def test_429_retry_after_delays_the_task_and_slows_the_queue(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue(min_backoff=0.1, max_backoff=10.0, max_dispatches_per_second=100)
    target.scripts["/busy"] = [Reply(429, {"Retry-After": "2"})]
    first = f"{queue.name}/tasks/busy"
    cloud.client.create_task(parent=queue.name, task=http_task(first, target.url("/busy")))
    wait_for(lambda: len(target.at("/busy")) == 1, cloud.wait_s)
    refused_at = target.at("/busy")[0].at_s
    stats = {"name": queue.name, "read_mask": {"paths": ["stats"]}}
    # The receiver records the 429 before the emulator reads it: wait for the queue to follow.
    wait_for(
        lambda: cloud.beta.get_queue(request=stats).stats.effective_execution_rate < 100,
        cloud.wait_s,
        "the enforced rate lowered below the configured 100/s",
    )
    cloud.client.create_task(parent=queue.name, task=http_task("", target.url("/other")))
    wait_for(lambda: len(target.at("/busy")) == 2 and target.at("/other") != [], cloud.wait_s)
    assert target.at("/busy")[1].at_s - refused_at >= 2 * 0.9
    assert target.at("/other")[0].at_s < target.at("/busy")[1].at_s  # slowed, not stopped


def test_rate_limit_and_burst(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue(max_dispatches_per_second=10)
    burst = queue.rate_limits.max_burst_size
    cloud.client.batch_create_tasks(
        parent=queue.name,
        requests=[{"task": http_task("", target.url("/rate"))} for _ in range(20)],
    )
    wait_for(lambda: len(target.at("/rate")) == 20, cloud.wait_s)
    times = sorted(h.at_s for h in target.at("/rate"))
    assert times[-1] - times[0] >= (20 - burst) / 10 * 0.8


def test_max_concurrent_dispatches_is_never_exceeded(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue(max_concurrent_dispatches=2)
    target.delays_s["/conc"] = 0.15
    cloud.client.batch_create_tasks(
        parent=queue.name,
        requests=[{"task": http_task("", target.url("/conc"))} for _ in range(8)],
    )
    wait_for(lambda: len(target.at("/conc")) == 8, cloud.wait_s)
    assert target.max_concurrent_at["/conc"] <= 2


def test_queue_http_target_overrides_method_uri_headers_and_token(
    cloud: Cloud, target: Receiver
) -> None:
    audience = "https://queue-audience.example"
    queue = cloud.make_queue()
    override = tasks_v2.Queue(
        name=queue.name,
        http_target={
            "http_method": "PUT",
            "uri_override": {
                "path_override": {"path": "/over"},
                "query_override": {"query_params": "q=1"},
            },
            "header_overrides": [{"header": {"key": "X-Q", "value": "queue"}}],
            "oidc_token": {"service_account_email": cloud.invoker_email, "audience": audience},
        },
    )
    mask = field_mask_pb2.FieldMask(paths=["http_target"])
    updated = cloud.client.update_queue(queue=override, update_mask=mask)
    assert updated.http_target.uri_override.path_override.path == "/over"
    cloud.client.create_task(
        parent=queue.name,
        task=http_task("", target.url("/orig?x=2"), body=b"b", headers={"X-Q": "task"}),
    )
    wait_for(lambda: target.at("/over") != [], cloud.wait_s)
    (hit,) = target.at("/over")
    assert (hit.method, hit.query, hit.body) == ("PUT", "q=1", b"b")
    assert hit.headers["x-q"] == "queue"
    token = hit.headers["authorization"].removeprefix("Bearer ")
    request = google.auth.transport.requests.Request()
    claims = id_token.verify_token(token, request, audience=audience, certs_url=cloud.certs_url)
    assert claims["email"] == cloud.invoker_email
    assert target.at("/orig") == []
