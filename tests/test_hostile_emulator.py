"""Hostile input to the Cloud Tasks emulator, over gRPC and REST: refused at the door.

Whatever the emulator accepts it must be able to serve back and dispatch, so
anything it could not is refused at create time with INVALID_ARGUMENT naming
the field; REST answers as Google's JSON APIs do.
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2

from localcloud.tasks.server import TasksEmulator

LOCATION = "projects/hostile/locations/us-central1"
TARGET = "http://127.0.0.1:9/tasks"  # never dispatched: the queues here are paused
Task = tasks_v2.Task.pb()
CreateTaskRequest = tasks_v2.CreateTaskRequest.pb()


@pytest.fixture
def queue(client: tasks_v2.CloudTasksClient) -> str:
    name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:10]}"
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    client.pause_queue(name=name)
    return name


def create(client: tasks_v2.CloudTasksClient, queue: str, task: Any) -> tasks_v2.Task:
    """CreateTask with a raw ``Task`` message (no client-side conversion in the way)."""
    raw = CreateTaskRequest(parent=queue)
    raw.task.CopyFrom(task)
    return client.create_task(request=tasks_v2.CreateTaskRequest.wrap(raw))


def http_task(url: str = TARGET, **headers: str) -> Any:
    task = Task()
    task.http_request.url = url
    task.http_request.headers.update(headers)
    return task


def assert_refused(client: tasks_v2.CloudTasksClient, queue: str, task: Any, field: str) -> None:
    with pytest.raises(exceptions.InvalidArgument) as refused:
        create(client, queue, task)
    assert field in refused.value.message


def rest(emulator: TasksEmulator, verb: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(verb, f"{emulator.rest_url}v2/{path}", timeout=30, **kwargs)


# -- gRPC: refused at create time -------------------------------------------------------


@pytest.mark.parametrize(("seconds", "nanos"), [(-(10**12), 0), (0, -1), (0, 10**9), (10**13, 0)])
def test_a_schedule_time_outside_a_timestamp_is_refused(
    emulator: TasksEmulator,
    client: tasks_v2.CloudTasksClient,
    queue: str,
    seconds: int,
    nanos: int,
) -> None:
    task = http_task()
    task.schedule_time.seconds, task.schedule_time.nanos = seconds, nanos
    assert_refused(client, queue, task, "schedule_time")
    listed = rest(emulator, "GET", f"{queue}/tasks")  # the queue still lists
    assert listed.status_code == 200 and listed.json() == {}


def test_the_earliest_timestamp_is_accepted_and_read_back(
    emulator: TasksEmulator, client: tasks_v2.CloudTasksClient, queue: str
) -> None:
    task = http_task()
    task.schedule_time.seconds = -62_135_596_800  # 0001-01-01T00:00:00Z
    created = create(client, queue, task)
    assert client.get_task(name=created.name).schedule_time.year == 1
    listed = rest(emulator, "GET", f"{queue}/tasks")
    assert listed.status_code == 200
    assert listed.json()["tasks"][0]["scheduleTime"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "field", ["dispatch_deadline", "retry_config.min_backoff", "retry_config.max_retry_duration"]
)
def test_a_duration_outside_a_duration_is_refused(
    client: tasks_v2.CloudTasksClient, queue: str, field: str
) -> None:
    task = http_task()
    duration = task
    for part in field.split("."):
        duration = getattr(duration, part)
    duration.seconds, duration.nanos = 30, -5  # nanos of the other sign
    assert_refused(client, queue, task, field)
    duration.seconds, duration.nanos = 10**15, 0
    assert_refused(client, queue, task, field)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/tasks",
        "http://127.0.0.1:port/tasks",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/tasks\t",
        " http://127.0.0.1/tasks",
        "http://exa mple.com/",
        "http://127.0.0.1/é",
        "http://a..b/",
        "http://-bad-.example/",
    ],
)
def test_a_url_the_dispatcher_cannot_send_to_is_refused(
    client: tasks_v2.CloudTasksClient, queue: str, url: str
) -> None:
    assert_refused(client, queue, http_task(url), "http_request.url")


@pytest.mark.parametrize("value", ["é中", "tab\tok\x01no", " leading", "\x7f"])
def test_a_header_value_http_cannot_carry_is_refused(
    client: tasks_v2.CloudTasksClient, queue: str, value: str
) -> None:
    assert_refused(client, queue, http_task(**{"X-Custom": value}), "X-Custom")


def test_latin1_header_values_are_accepted(client: tasks_v2.CloudTasksClient, queue: str) -> None:
    created = create(client, queue, http_task(**{"X-Custom": "café\tau lait"}))
    assert created.http_request.headers["X-Custom"] == "café\tau lait"


@pytest.mark.parametrize(
    ("queue_fields", "field"),
    [
        ({"http_target": {"uri_override": {"host": "bad host"}}}, "uri_override.host"),
        ({"http_target": {"uri_override": {"path_override": {"path": "/a b"}}}}, "path"),
        ({"rate_limits": {"max_dispatches_per_second": 1e-300}}, "max_dispatches_per_second"),
        ({"retry_config": {"max_backoff": {"seconds": 10**15}}}, "retry_config.max_backoff"),
    ],
)
def test_a_queue_that_could_not_dispatch_is_refused(
    client: tasks_v2.CloudTasksClient, queue_fields: dict[str, Any], field: str
) -> None:
    name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:10]}"
    with pytest.raises(exceptions.InvalidArgument) as refused:
        client.create_queue(parent=LOCATION, queue={"name": name, **queue_fields})
    assert field in refused.value.message


def test_a_page_token_not_from_a_previous_page_is_refused(
    client: tasks_v2.CloudTasksClient, queue: str
) -> None:
    for token in ("!!!", "YWJ", "a b", "YWJj\n"):
        with pytest.raises(exceptions.InvalidArgument, match="page_token"):
            client.list_tasks(request={"parent": queue, "page_token": token})
        with pytest.raises(exceptions.InvalidArgument, match="page_token"):
            client.list_queues(request={"parent": LOCATION, "page_token": token})


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05abc",  # field 1 (parent), length 5, only 3 bytes: truncated
        b"\x0a\x02\xff\xfe",  # parent is not UTF-8
        b"\x12\x04\x0a\x02\xc3\x28",  # task.name is not UTF-8
    ],
)
def test_an_undecodable_request_is_invalid_argument(channel: grpc.Channel, data: bytes) -> None:
    create_task = channel.unary_unary("/google.cloud.tasks.v2.CloudTasks/CreateTask")
    with pytest.raises(grpc.RpcError) as failed:
        create_task(data, timeout=10)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CreateTaskRequest" in (failed.value.details() or "")


# -- REST: Google's JSON API behaviour ------------------------------------------------------


def test_rest_refuses_what_google_json_apis_refuse(emulator: TasksEmulator, queue: str) -> None:
    tasks = f"{queue}/tasks"
    cases = {
        "unknown field": {"task": {"httpRequest": {"url": TARGET}, "color": "red"}},
        "unknown enum value": {"task": {"httpRequest": {"url": TARGET, "httpMethod": "BREW"}}},
        "not base64": {"task": {"httpRequest": {"url": TARGET, "body": "not base64!"}}},
        "bad base64 length": {"task": {"httpRequest": {"url": TARGET, "body": "QUJDRA="}}},
    }
    for case, document in cases.items():
        answer = rest(emulator, "POST", tasks, json=document)
        assert answer.status_code == 400, (case, answer.text)
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "httpMethod" in rest(emulator, "POST", tasks, json=cases["unknown enum value"]).text
    assert "body" in rest(emulator, "POST", tasks, json=cases["not base64"]).text
    assert rest(emulator, "GET", tasks, params={"responseView": "BOGUS"}).status_code == 400
    assert rest(emulator, "GET", tasks, params={"pageToken": "!!!"}).status_code == 400
    deep = b'{"task": ' * 100_000 + b"{}" + b"}" * 100_000
    answer = rest(emulator, "POST", tasks, data=deep)
    assert answer.status_code == 400 and "nested" in answer.json()["error"]["message"]


def test_rest_tolerates_system_parameters(emulator: TasksEmulator, queue: str) -> None:
    params = {"alt": "json", "$alt": "json", "prettyPrint": "false", "fields": "name", "key": "k"}
    document = {"task": {"httpRequest": {"url": TARGET, "body": "QUJD"}}}  # "ABC", unpadded too
    created = rest(emulator, "POST", f"{queue}/tasks", params=params, json=document)
    assert created.status_code == 200, created.text
    assert rest(emulator, "GET", f"{queue}/tasks", params=params).status_code == 200
    urlsafe = {"task": {"httpRequest": {"url": TARGET, "body": "-_8"}}}
    assert rest(emulator, "POST", f"{queue}/tasks", json=urlsafe).status_code == 200


def test_rest_batch_delete_is_unimplemented_like_other_unserved_methods(
    emulator: TasksEmulator, queue: str
) -> None:
    answer = rest(emulator, "POST", f"{queue}/tasks:batchDelete", json={})
    assert answer.status_code == 501 and answer.json()["error"]["status"] == "UNIMPLEMENTED"


def raw_request(emulator: TasksEmulator, head: str) -> bytes:
    """Send a hand-written request head; return what the server answers before closing."""
    port = int(emulator.rest_url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "²"])
def test_rest_a_bad_content_length_answers_400_without_a_traceback(
    emulator: TasksEmulator, queue: str, length: str, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        f"POST /v2/{queue}/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        "Content-Type: application/json\r\n\r\n"
    )
    with caplog.at_level(logging.DEBUG):
        answer = raw_request(emulator, head)  # answered, then closed: no hang
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Content-Length" in answer
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


def test_rest_a_body_too_large_answers_413_with_code_413(
    emulator: TasksEmulator, queue: str
) -> None:
    head = f"POST /v2/{queue}/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: {2**40}\r\n\r\n"
    answer = raw_request(emulator, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code": 413' in answer


def test_internal_errors_do_not_echo_the_exception(
    emulator: TasksEmulator,
    client: tasks_v2.CloudTasksClient,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(emulator.store, "get_task", broken)
    name = f"{queue}/tasks/t1"
    with pytest.raises(exceptions.InternalServerError) as failed:
        client.get_task(name=name)
    assert "secret" not in failed.value.message
    answer = rest(emulator, "GET", name)
    assert answer.status_code == 500 and "secret" not in answer.text
