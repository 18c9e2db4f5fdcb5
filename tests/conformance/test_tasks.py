"""Conformance: task methods, names, batches and validation (public API only)."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from tests.support.builders import gone, http_task, later
from tests.support.conformance_cloud import Cloud
from tests.support.receiver import Receiver, wait_for


def invalid(cloud: Cloud, message: str) -> Any:
    """Expect INVALID_ARGUMENT; against the emulator also its precise message."""
    return pytest.raises(exceptions.InvalidArgument, match=None if cloud.real else message)


def test_create_get_list_views_delete(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    url = target.url("/never")
    created = cloud.client.create_task(
        parent=queue.name,
        task=http_task(f"{queue.name}/tasks/t-1", url, body=b"{}", schedule_time=later(3600)),
    )
    assert created.name == f"{queue.name}/tasks/t-1"
    assert created.dispatch_deadline == datetime.timedelta(minutes=10)
    assert (created.dispatch_count, created.response_count) == (0, 0)
    assert created.view == tasks_v2.Task.View.BASIC and created.http_request.body == b""
    full = cloud.client.get_task(request={"name": created.name, "response_view": "FULL"})
    assert full.http_request.body == b"{}" and full.view == tasks_v2.Task.View.FULL
    generated = cloud.client.create_task(
        parent=queue.name, task=http_task("", url, schedule_time=later(3600))
    )
    assert generated.name.startswith(f"{queue.name}/tasks/")
    for i in range(3):
        cloud.client.create_task(
            parent=queue.name,
            task=http_task(f"{queue.name}/tasks/p{i}", url, schedule_time=later(3600)),
        )
    pager = cloud.client.list_tasks(
        request={"parent": queue.name, "page_size": 2, "response_view": "FULL"}
    )
    pages = list(pager.pages)
    assert all(len(page.tasks) <= 2 for page in pages)
    listed = [t for page in pages for t in page.tasks]
    assert len({t.name for t in listed}) == 5
    assert {t.http_request.body for t in listed if t.name == created.name} == {b"{}"}
    cloud.client.delete_task(name=created.name)
    with pytest.raises(exceptions.NotFound):
        cloud.client.get_task(name=created.name)
    with pytest.raises(exceptions.NotFound):
        cloud.client.delete_task(name=created.name)
    assert target.at("/never") == []


def test_names_stay_taken_while_live_and_after_finishing_or_deletion(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue()
    live = http_task(f"{queue.name}/tasks/live", target.url("/x"), schedule_time=later(3600))
    cloud.client.create_task(parent=queue.name, task=live)
    with pytest.raises(exceptions.AlreadyExists):
        cloud.client.create_task(parent=queue.name, task=live)
    cloud.client.delete_task(name=live["name"])
    with pytest.raises(exceptions.AlreadyExists):
        cloud.client.create_task(parent=queue.name, task=live)
    done = http_task(f"{queue.name}/tasks/done", target.url("/done"))
    cloud.client.create_task(parent=queue.name, task=done)
    wait_for(lambda: len(target.at("/done")) == 1, cloud.wait_s)
    wait_for(lambda: gone(cloud.client, done["name"]), cloud.wait_s)
    with pytest.raises(exceptions.AlreadyExists):
        cloud.client.create_task(parent=queue.name, task=done)


def test_64_concurrent_creates_of_one_name_exactly_one_wins(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    task = http_task(f"{queue.name}/tasks/same", target.url("/x"), schedule_time=later(600))
    barrier = threading.Barrier(64)
    outcomes: list[str] = []

    def create() -> None:
        barrier.wait()
        try:
            cloud.client.create_task(parent=queue.name, task=task)
            outcomes.append("ok")
        except exceptions.AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["exists"] * 63 + ["ok"]


def test_batch_create_reports_failures_by_index_and_request_id_is_idempotent(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue()
    names = [f"{queue.name}/tasks/b{i}" for i in (0, 1, 0, 2)]
    requests = [
        {"parent": queue.name, "task": http_task(n, target.url("/b"), schedule_time=later(600))}
        for n in names
    ]
    operation = cloud.client.batch_create_tasks(parent=queue.name, requests=requests)
    result = operation.result(timeout=30)
    assert sorted(t.name for t in result.tasks) == sorted([names[0], names[1], names[3]])
    failed = operation.metadata.failed_requests
    assert list(failed) == [2] and failed[2].code == 6
    state = tasks_v2.BatchCreateTasksMetadata.State
    assert operation.metadata.state == state.PARTIALLY_SUCCEEDED

    again = {
        "parent": queue.name,
        "request_id": f"req-{queue.name.rsplit('/', 1)[-1]}",
        "requests": [{"task": http_task(f"{queue.name}/tasks/r", target.url("/r"))}],
    }
    first = cloud.client.batch_create_tasks(
        request={
            **again,
            "requests": [
                {
                    "task": http_task(
                        f"{queue.name}/tasks/r", target.url("/r"), schedule_time=later(600)
                    )
                }
            ],
        }
    )
    second = cloud.client.batch_create_tasks(
        request={
            **again,
            "requests": [
                {
                    "task": http_task(
                        f"{queue.name}/tasks/r", target.url("/r"), schedule_time=later(600)
                    )
                }
            ],
        }
    )
    assert second.operation.name == first.operation.name
    assert not second.metadata.failed_requests  # the first call's result, not ALREADY_EXISTS

    too_many = [{"task": http_task("", target.url("/b"))}] * 101
    with invalid(cloud, "1 to 100 requests, got 101"):
        cloud.client.batch_create_tasks(parent=queue.name, requests=too_many)


def test_invalid_requests_are_invalid_argument_with_precise_messages(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue()
    url = target.url("/x")
    other_queue = f"{cloud.location}/queues/other"
    cases: list[tuple[dict[str, Any], str]] = [
        (http_task(f"{queue.name}/tasks/bad.id", url), "invalid characters"),
        (http_task(f"{queue.name}/tasks/" + "a" * 501, url), "maximum is 500"),
        (http_task(f"{other_queue}/tasks/t", url), "not in the queue"),
        (http_task(f"{queue.name}/tasks/t", "ftp://example.com/x"), "http:// or https://"),
        (http_task(f"{queue.name}/tasks/t", ""), "url is required"),
        ({"name": f"{queue.name}/tasks/t"}, "http_request is required"),
        (http_task(f"{queue.name}/tasks/t", url, schedule_time=later(31 * 86400)), "30 days"),
        (
            http_task(
                f"{queue.name}/tasks/t", url, dispatch_deadline=duration_pb2.Duration(seconds=14)
            ),
            "dispatch_deadline must be between 15s and 1800s",
        ),
        (
            http_task(
                f"{queue.name}/tasks/t", url, dispatch_deadline=duration_pb2.Duration(seconds=1801)
            ),
            "dispatch_deadline must be between 15s and 1800s",
        ),
        (
            http_task(f"{queue.name}/tasks/t", url, body=b"x" * (1024 * 1024 + 1)),
            "maximum task size",
        ),
    ]
    for task, message in cases:
        with invalid(cloud, message):
            cloud.client.create_task(parent=queue.name, task=task)
    with pytest.raises(exceptions.NotFound):
        cloud.client.create_task(parent=f"{cloud.location}/queues/missing", task=http_task("", url))


def test_run_task_ignores_pause_and_replaces_the_scheduled_attempt(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue()
    cloud.client.pause_queue(name=queue.name)
    name = f"{queue.name}/tasks/run-me"
    cloud.client.create_task(
        parent=queue.name, task=http_task(name, target.url("/run"), schedule_time=later(3600))
    )
    ran = cloud.client.run_task(name=name)
    assert ran.name == name
    wait_for(lambda: len(target.at("/run")) == 1, cloud.wait_s)
    wait_for(lambda: gone(cloud.client, name), cloud.wait_s)
    cloud.client.resume_queue(name=queue.name)
    with pytest.raises(exceptions.NotFound):
        cloud.client.run_task(name=name)
    assert len(target.at("/run")) == 1
