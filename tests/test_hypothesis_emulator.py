"""Property tests of the Cloud Tasks emulator: CreateTask, CreateQueue/UpdateQueue, ListTasks.

Arbitrary names, times, durations, rates, URLs, headers, bodies and page tokens,
over gRPC (the official client, raw messages) and over REST (JSON). The invariant:
OK, or INVALID_ARGUMENT / NOT_FOUND / ALREADY_EXISTS / FAILED_PRECONDITION with a
message; never INTERNAL, UNKNOWN or 500; whatever was accepted reads back over
gRPC and REST, lists, and dispatches.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2, json_format
from hypothesis import event, given
from hypothesis import strategies as st

from localcloud.tasks.paging import encode_page_token
from localcloud.tasks.server import TasksEmulator
from localcloud.tasks.service import INTERNAL_MESSAGE
from tests.support.receiver import Receiver, wait_for

LOCATION = "projects/hypothesis/locations/us-central1"
ALLOWED = (
    exceptions.InvalidArgument,
    exceptions.NotFound,
    exceptions.AlreadyExists,
    exceptions.FailedPrecondition,
)
Task = tasks_v2.Task.pb()
Queue = tasks_v2.Queue.pb()
DISPATCH_WAIT_S = 20.0
# What the dispatcher records when it could not even build the request.
UNSENDABLE = re.compile(r"(?i)dispatch error|invalid|failed to parse|codec can't")

text = st.text(max_size=30)  # protobuf strings: any Unicode but lone surrogates
token_chars = st.sampled_from("abcXYZ019-_!#.~")
ids = st.text(token_chars, min_size=1, max_size=12) | text | st.just("x" * 501)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small_ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
seconds = st.sampled_from([0, 15, 30, 600, 1800, 3600, -1, 10**12, -(10**12)]) | ints
nanos = st.sampled_from([0, 1, 999_999_999, -1, 10**9]) | small_ints
doubles = st.floats() | st.sampled_from([0.0, 1.0, 500.0, 1e-300, 1e-7, 0.5])
header_names = st.sampled_from(["X-Custom", "Content-Type", "Authorization", "bad name", ""])
header_values = st.text(max_size=20) | st.sampled_from(["é", "中", " x", "a\tb", "\x01"])


def url_paths() -> st.SearchStrategy[str]:
    return st.text(max_size=20)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


@pytest.fixture(scope="module")
def queue(client: tasks_v2.CloudTasksClient) -> str:
    """A paused queue: only RunTask dispatches, so no task goes to a host it was not sent to."""
    name = f"{LOCATION}/queues/tasks-{uuid.uuid4().hex[:8]}"
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    client.pause_queue(name=name)
    return name


def rest(emulator: TasksEmulator, verb: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(verb, f"{emulator.rest_url}v2/{path}", timeout=30, **kwargs)


# Every refusal says what it refused: a field, or the part of the request it is about.
NAMES_A_FIELD = re.compile(
    r"(?i)name|id\b|url|header|body|method|time|deadline|backoff|attempts|doublings|rate|"
    r"dispatch|token|page|queue|task|target|override|mask|ratio|duration|oidc|json|request|"
    r"content-length"
)


def assert_names_a_field(message: str) -> None:
    assert INTERNAL_MESSAGE not in message and NAMES_A_FIELD.search(message), message


def assert_allowed_error(error: exceptions.GoogleAPICallError) -> None:
    event(f"refused: {type(error).__name__}")  # --hypothesis-show-statistics counts them
    assert isinstance(error, ALLOWED), f"{type(error).__name__}: {error.message}"
    assert_names_a_field(error.message)


def assert_rest_answer(answer: requests.Response) -> None:
    event(f"HTTP {answer.status_code}")
    assert answer.status_code in (200, 400, 404, 409), answer.text
    if answer.status_code != 200:
        error = answer.json()["error"]
        assert error["code"] == answer.status_code
        assert_names_a_field(error["message"])


def as_json(message: Any) -> Any:
    """Return ``message`` as JSON; a time JSON cannot write (nanos out of range) as a bad string."""
    try:
        return json_format.MessageToDict(message)
    except json_format.SerializeToJsonError:
        return {"name": "not-json-writable", "scheduleTime": "-1-13-32T25:61:61Z"}


# -- tasks ---------------------------------------------------------------------------------


def mostly(draw: st.DrawFn, valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """Draw from ``hostile`` one time in four, else from ``valid``: most tasks get accepted."""
    return draw(hostile) if draw(st.integers(min_value=0, max_value=3)) == 0 else draw(valid)


@st.composite
def tasks(draw: st.DrawFn, queue: str, target: str) -> Any:
    task = Task()
    valid_name = st.text(token_chars, min_size=1, max_size=12).map(lambda i: f"{queue}/tasks/{i}")
    name = mostly(draw, st.none() | valid_name, ids.map(lambda i: f"{queue}/tasks/{i}") | text)
    if name is not None:
        task.name = name
    http = task.http_request
    http.url = mostly(
        draw,
        url_paths().map(lambda p: target + urllib.parse.quote(p)),
        url_paths().map(lambda p: target + p)
        | st.sampled_from(["http://127.0.0.1:99999/", "ftp://x/", "https://example.invalid/x"])
        | text,
    )
    method = mostly(draw, st.sampled_from([0, 1, 4, 6]), st.integers(min_value=-1, max_value=9))
    http.http_method = method
    valid_headers = st.dictionaries(st.sampled_from(["X-Custom", "X-Other"]), st.just("v"))
    http.headers.update(
        mostly(draw, valid_headers, st.dictionaries(header_names, header_values, max_size=3))
    )
    if method in (0, 1, 4, 6) or draw(st.booleans()):
        http.body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        http.oidc_token.service_account_email = mostly(draw, st.just("a@b.iam"), text)
        http.oidc_token.audience = draw(text)
    if draw(st.booleans()):
        near_now = st.integers(-100, 100).map(lambda offset: int(time.time()) + offset)
        task.schedule_time.seconds = mostly(draw, near_now, seconds)
        task.schedule_time.nanos = mostly(draw, st.integers(0, 999_999_999), nanos)
    if draw(st.booleans()):
        task.dispatch_deadline.seconds = mostly(draw, st.integers(15, 1800), seconds)
        task.dispatch_deadline.nanos = mostly(draw, st.just(0), nanos)
    if draw(st.booleans()):
        task.retry_config.max_attempts = mostly(draw, st.integers(-1, 100), small_ints)
        task.retry_config.min_backoff.seconds = mostly(draw, st.integers(0, 10), seconds)
        task.retry_config.max_backoff.seconds = mostly(draw, st.integers(10, 3600), seconds)
    return task


def hostile_tasks(target: str) -> st.SearchStrategy[Any]:
    """Tasks the emulator once accepted and then could not serve or dispatch; tried first."""

    def build(case: int) -> Any:
        task = Task()
        task.http_request.url = target
        if case == 0:
            task.schedule_time.seconds = -(10**12)  # before year 1
        elif case == 1:
            task.schedule_time.nanos = -1
        elif case == 2:
            task.http_request.url = "http://127.0.0.1:99999/hyp"
        elif case == 3:
            task.http_request.url = target + " x"
        else:
            task.http_request.headers["X-Custom"] = "中"
        return task

    return st.integers(min_value=0, max_value=4).map(build)


def check_accepted_task(
    client: tasks_v2.CloudTasksClient,
    emulator: TasksEmulator,
    queue: str,
    created: tasks_v2.Task,
    target: str,
) -> None:
    """Read the task back both ways, find it in both listings, dispatch it if it is ours."""
    name = created.name
    event("accepted")
    full = client.get_task(request={"name": name, "response_view": tasks_v2.Task.View.FULL})
    assert full.name == name
    got = rest(emulator, "GET", name, params={"responseView": "FULL"})
    assert got.status_code == 200 and got.json()["name"] == name, got.text
    listed = [t.name for t in client.list_tasks(request={"parent": queue, "page_size": 50})]
    assert name in listed
    pages = rest(emulator, "GET", f"{queue}/tasks", params={"pageSize": "1000"})
    assert pages.status_code == 200 and name in [t["name"] for t in pages.json()["tasks"]]
    if urlsplit(created.http_request.url).hostname == "127.0.0.1":
        client.run_task(name=name)
        assert_dispatched(client, name)
    else:  # no request to hosts a test must not reach: prepared as the dispatcher would
        http = created.http_request
        method = tasks_v2.HttpMethod(http.http_method).name
        headers = {key: value.encode("latin-1") for key, value in http.headers.items()}
        requests.Request(method, http.url, headers=headers, data=http.body).prepare()
        client.delete_task(name=name)


def assert_dispatched(client: tasks_v2.CloudTasksClient, name: str) -> None:
    """Wait until the attempt got an HTTP answer (the task is gone, or it records the status)."""

    def answered() -> bool:
        try:
            task = client.get_task(name=name)
        except exceptions.NotFound:
            return True  # the receiver answered 2xx: done
        message = task.last_attempt.response_status.message
        assert not UNSENDABLE.search(message), f"the dispatcher could not send {name}: {message}"
        if message:  # an answer, or a connection the target refused (an overridden port)
            client.delete_task(name=name)
            return True
        return False

    wait_for(answered, DISPATCH_WAIT_S)


@dataclass(frozen=True)
class Harness:
    """What a CreateTask property needs: both surfaces, the paused queue, our target URL."""

    client: tasks_v2.CloudTasksClient
    emulator: TasksEmulator
    queue: str
    target: str


@pytest.fixture(scope="module")
def harness(
    client: tasks_v2.CloudTasksClient,
    emulator: TasksEmulator,
    queue: str,
    receiver: Receiver,
) -> Harness:
    return Harness(client, emulator, queue, receiver.url("/hyp"))


@given(data=st.data())
def test_grpc_create_task(harness: Harness, data: st.DataObject) -> None:
    client, queue, target = harness.client, harness.queue, harness.target
    task = data.draw(hostile_tasks(target) | tasks(queue, target))
    request = tasks_v2.CreateTaskRequest.pb()(parent=queue, response_view=2)
    request.task.CopyFrom(task)
    try:
        created = client.create_task(request=tasks_v2.CreateTaskRequest.wrap(request))
    except exceptions.GoogleAPICallError as error:
        assert_allowed_error(error)
        return
    check_accepted_task(client, harness.emulator, queue, created, target)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@given(data=st.data())
def test_rest_create_task(harness: Harness, data: st.DataObject) -> None:
    client, emulator, queue, target = (
        harness.client,
        harness.emulator,
        harness.queue,
        harness.target,
    )
    task = data.draw(tasks(queue, target))  # the hostile ones are in JSON below
    well_formed = {"task": as_json(task), "responseView": "FULL"}
    document = mostly(
        data.draw,
        st.just(well_formed),
        json_values
        | st.fixed_dictionaries({"task": st.fixed_dictionaries({"httpRequest": json_values})}),
    )
    params = mostly(
        data.draw,
        st.dictionaries(st.sampled_from(["alt", "$alt", "prettyPrint"]), st.just("json")),
        st.dictionaries(st.sampled_from(["alt", "pageSize", "x"]), text, max_size=2),
    )
    answer = rest(emulator, "POST", f"{queue}/tasks", data=json.dumps(document), params=params)
    assert_rest_answer(answer)
    if answer.status_code == 200:
        created = tasks_v2.Task.wrap(json_format.ParseDict(answer.json(), Task()))
        check_accepted_task(client, emulator, queue, created, target)


@given(
    token=text.map(encode_page_token) | text | st.binary(max_size=20).map(lambda b: b.hex()),
    size=st.integers(min_value=0, max_value=2000) | small_ints,
)
def test_list_tasks_pages(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, queue: str, token: str, size: int
) -> None:
    try:
        client.list_tasks(request={"parent": queue, "page_token": token, "page_size": size})
    except exceptions.GoogleAPICallError as error:
        assert_allowed_error(error)
    answer = rest(
        emulator, "GET", f"{queue}/tasks", params={"pageToken": token, "pageSize": str(size)}
    )
    assert_rest_answer(answer)


# -- queues ------------------------------------------------------------------------------------


@st.composite
def queues(draw: st.DrawFn, name: str) -> Any:
    queue = Queue(name=mostly(draw, st.just(name), text))
    if draw(st.booleans()):
        rate = mostly(draw, st.floats(min_value=1e-7, max_value=500), doubles)
        queue.rate_limits.max_dispatches_per_second = rate
        queue.rate_limits.max_concurrent_dispatches = mostly(draw, st.integers(1, 5000), small_ints)
    if draw(st.booleans()):
        retry = queue.retry_config
        retry.max_attempts = mostly(draw, st.integers(-1, 100), small_ints)
        retry.max_doublings = mostly(draw, st.integers(0, 16), small_ints)
        for field in ("min_backoff", "max_backoff", "max_retry_duration"):
            if draw(st.booleans()):
                getattr(retry, field).seconds = mostly(draw, st.integers(0, 3600), seconds)
                getattr(retry, field).nanos = mostly(draw, st.just(0), nanos)
    if draw(st.booleans()):
        uri = queue.http_target.uri_override
        if draw(st.booleans()):
            uri.host = draw(st.sampled_from(["127.0.0.1", "example.invalid"]) | text)
        if draw(st.booleans()):
            uri.port = draw(st.sampled_from([0, 80, 65536, -1]) | ints)
        if draw(st.booleans()):
            uri.path_override.path = draw(text)
        if draw(st.booleans()):
            uri.query_override.query_params = draw(text)
        for key, value in draw(st.dictionaries(header_names, header_values, max_size=2)).items():
            override = queue.http_target.header_overrides.add()
            override.header.key, override.header.value = key, value
    if draw(st.booleans()):
        queue.stackdriver_logging_config.sampling_ratio = draw(doubles)
    return queue


def check_accepted_queue(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, name: str, target: str
) -> None:
    """Read the queue back both ways, find it listed, and dispatch a task through it.

    The queue is paused; RunTask dispatches anyway, with the queue's overrides
    applied, unless they send it to another host (no test reaches out).
    """
    event("accepted")
    queue = client.get_queue(name=name)
    assert queue.name == name
    got = rest(emulator, "GET", name)
    assert got.status_code == 200 and got.json()["name"] == name, got.text
    assert name in [q.name for q in client.list_queues(parent=LOCATION)]
    assert rest(emulator, "GET", f"{LOCATION}/queues").status_code == 200
    if queue.http_target.uri_override.host not in ("", "127.0.0.1"):
        return
    task = client.create_task(parent=name, task={"http_request": {"url": target}})
    event("dispatched through the queue's overrides")
    client.run_task(name=task.name)
    assert_dispatched(client, task.name)


@given(data=st.data())
def test_grpc_create_and_update_queue(
    client: tasks_v2.CloudTasksClient,
    emulator: TasksEmulator,
    receiver: Receiver,
    data: st.DataObject,
) -> None:
    name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:10]}"
    queue = data.draw(queues(name))
    try:
        created = client.create_queue(parent=LOCATION, queue=tasks_v2.Queue.wrap(queue))
    except exceptions.GoogleAPICallError as error:
        assert_allowed_error(error)
        return
    client.pause_queue(name=created.name)  # a queue of arbitrary overrides never dispatches
    check_accepted_queue(client, emulator, created.name, receiver.url("/q"))
    update = data.draw(queues(created.name))
    paths = data.draw(
        st.lists(
            st.sampled_from(
                ["rate_limits", "retry_config", "http_target", "stackdriver_logging_config"]
            )
            | text,
            max_size=3,
        )
    )
    try:
        client.update_queue(
            queue=tasks_v2.Queue.wrap(update), update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
    except exceptions.GoogleAPICallError as error:
        assert_allowed_error(error)
    check_accepted_queue(client, emulator, created.name, receiver.url("/q"))
    client.delete_queue(name=created.name)


@given(data=st.data())
def test_rest_create_and_update_queue(
    client: tasks_v2.CloudTasksClient,
    emulator: TasksEmulator,
    receiver: Receiver,
    data: st.DataObject,
) -> None:
    name = f"{LOCATION}/queues/r-{uuid.uuid4().hex[:10]}"
    document = mostly(data.draw, queues(name).map(as_json), json_values)
    answer = rest(emulator, "POST", f"{LOCATION}/queues", data=json.dumps(document))
    assert_rest_answer(answer)
    if answer.status_code != 200:
        return
    created = answer.json()["name"]
    client.pause_queue(name=created)
    check_accepted_queue(client, emulator, created, receiver.url("/q"))
    update = data.draw(queues(created).map(as_json) | json_values)
    mask = data.draw(st.sampled_from(["", "rateLimits", "retryConfig,httpTarget", "bogus"]))
    answer = rest(emulator, "PATCH", created, data=json.dumps(update), params={"updateMask": mask})
    assert_rest_answer(answer)
    check_accepted_queue(client, emulator, created, receiver.url("/q"))
    client.delete_queue(name=created)
