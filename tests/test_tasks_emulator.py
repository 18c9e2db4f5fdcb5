"""Emulator-specific behaviour (counters, reservations, command, lifecycle) over gRPC.

The behaviour Cloud Tasks itself documents is tested in tests/conformance/.

Tasks target a small threaded HTTP receiver on 127.0.0.1 that records requests.
"""

from __future__ import annotations

import datetime
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.longrunning import operations_pb2

from localcloud.oidc import LocalIssuer
from localcloud.tasks.server import TasksEmulator
from localcloud.tasks.sqlite_task_store import MEMORY, SqliteTaskStore
from tests.support.builders import http_task, later
from tests.support.clock import FakeClock
from tests.support.ports import refused_port
from tests.support.receiver import Receiver, wait_for

LOCATION = "projects/test-project/locations/us-central1"
_queue_ids = itertools.count(1)


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as started:
        yield started


@pytest.fixture
def emulator(issuer: LocalIssuer) -> Iterator[TasksEmulator]:
    emu = TasksEmulator(issuer=issuer, dispatch_threads=16)
    emu.start()
    yield emu
    emu.stop()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("tasks-")]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def client(emulator: TasksEmulator) -> Iterator[tasks_v2.CloudTasksClient]:
    channel = grpc.insecure_channel(emulator.address)
    yield tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    channel.close()


def make_queue(client: tasks_v2.CloudTasksClient, **settings: Any) -> tasks_v2.Queue:
    queue: dict[str, Any] = {"name": f"{LOCATION}/queues/q-{next(_queue_ids)}"}
    rate = {k: settings.pop(k) for k in list(settings) if k.startswith("max_") and "dispatch" in k}
    if rate:
        queue["rate_limits"] = rate
    if settings:
        queue["retry_config"] = {
            k: (datetime.timedelta(seconds=v) if k.endswith("backoff") else v)
            for k, v in settings.items()
        }
    return client.create_queue(parent=LOCATION, queue=queue)


# -- queues -----------------------------------------------------------------------


def test_queue_settings_and_validation(client: tasks_v2.CloudTasksClient) -> None:
    queue = make_queue(client, max_dispatches_per_second=10, max_attempts=5, min_backoff=0.5)
    assert queue.rate_limits.max_burst_size == 2
    assert queue.retry_config.max_attempts == 5
    assert queue.retry_config.min_backoff == datetime.timedelta(seconds=0.5)
    with pytest.raises(exceptions.InvalidArgument, match="max_dispatches_per_second"):
        make_queue(client, max_dispatches_per_second=501)
    with pytest.raises(exceptions.InvalidArgument, match="Invalid queue name"):
        client.create_queue(parent=LOCATION, queue={"name": f"{LOCATION}/queues/bad_name"})


# -- tasks ------------------------------------------------------------------------


def test_already_exists_for_live_finished_and_deleted_names(
    emulator: TasksEmulator, client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    queue = make_queue(client)
    live = http_task(f"{queue.name}/tasks/live", receiver.url("/x"), schedule_time=later(3600))
    client.create_task(parent=queue.name, task=live)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue.name, task=live)
    client.delete_task(name=live["name"])
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue.name, task=live)

    done = http_task(f"{queue.name}/tasks/done", receiver.url("/done"))
    client.create_task(parent=queue.name, task=done)
    wait_for(lambda: emulator.stats()["succeeded"] == 1)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue.name, task=done)
    assert emulator.stats()["deduplicated"] == 3

    emulator.reset_reservations()
    client.create_task(parent=queue.name, task=live)
    client.create_task(parent=queue.name, task=done)


def test_reservation_expires(issuer: LocalIssuer, receiver: Receiver) -> None:
    clock = FakeClock()
    store = SqliteTaskStore(MEMORY, reservation_s=60, clock=clock)
    with TasksEmulator(issuer=issuer, store=store) as emulator:
        channel = grpc.insecure_channel(emulator.address)
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        queue = make_queue(client)
        task = http_task(f"{queue.name}/tasks/t", receiver.url("/x"), schedule_time=later(3600))
        client.create_task(parent=queue.name, task=task)
        client.delete_task(name=task["name"])
        clock.advance(59)  # the name is still reserved
        with pytest.raises(exceptions.AlreadyExists):
            client.create_task(parent=queue.name, task=task)
        clock.advance(2)  # and no longer
        client.create_task(parent=queue.name, task=task)
        channel.close()


def test_batch_create_with_duplicate(client: tasks_v2.CloudTasksClient, receiver: Receiver) -> None:
    queue = make_queue(client)
    names = [f"{queue.name}/tasks/b{i}" for i in (0, 1, 0, 2)]
    requests = [
        {"parent": queue.name, "task": http_task(n, receiver.url("/b"), schedule_time=later(60))}
        for n in names
    ]
    operation = client.batch_create_tasks(parent=queue.name, requests=requests)
    result = operation.result(timeout=10)
    assert [t.name for t in result.tasks] == [names[0], names[1], names[3]]
    failed = operation.metadata.failed_requests
    assert list(failed) == [2]
    assert failed[2].code == 6 and "already exists" in failed[2].message
    assert operation.metadata.state == tasks_v2.BatchCreateTasksMetadata.State.PARTIALLY_SUCCEEDED
    again = client.transport.operations_client.get_operation(operation.operation.name)
    assert again == operation.operation
    with pytest.raises(exceptions.NotFound):
        client.transport.operations_client.get_operation(f"{LOCATION}/operations/nope")

    too_many = [{"parent": queue.name, "task": http_task("", receiver.url("/b"))}] * 101
    with pytest.raises(exceptions.InvalidArgument, match="1 to 100 requests, got 101"):
        client.batch_create_tasks(parent=queue.name, requests=too_many)


# -- dispatch ---------------------------------------------------------------------


def test_retries_500_and_404_with_backoff_until_2xx(
    emulator: TasksEmulator, client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    queue = make_queue(client, min_backoff=0.05, max_backoff=1.0)
    receiver.scripts["/flaky"] = [500, 404, 204]
    name = f"{queue.name}/tasks/flaky"
    client.create_task(parent=queue.name, task=http_task(name, receiver.url("/flaky")))
    wait_for(lambda: emulator.stats()["succeeded"] == 1)
    attempts = receiver.at("/flaky")
    assert len(attempts) == 3
    assert [a.headers["x-cloudtasks-taskretrycount"] for a in attempts] == ["0", "1", "2"]
    assert [a.headers["x-cloudtasks-taskexecutioncount"] for a in attempts] == ["0", "0", "1"]
    assert "x-cloudtasks-taskpreviousresponse" not in attempts[0].headers
    assert [a.headers["x-cloudtasks-taskpreviousresponse"] for a in attempts[1:]] == ["500", "404"]
    assert all(a.headers["x-cloudtasks-taskretryreason"] for a in attempts[1:])
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9
    assert gaps[0] < 5.0 and gaps[1] < 5.0  # backoffs of 0.05 s and 0.1 s, not of seconds
    eta = [float(a.headers["x-cloudtasks-tasketa"]) for a in attempts]
    assert eta[1] - eta[0] >= 0.05 and eta[2] - eta[1] >= 0.1
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=name)
    stats = emulator.stats()
    assert (stats["dispatches"], stats["retries"], stats["queued"]) == (3, 2, 0)


def test_task_state_is_updated_between_attempts(
    client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    queue = make_queue(client, min_backoff=5.0, max_backoff=5.0)
    receiver.scripts["/once"] = [503]
    name = f"{queue.name}/tasks/once"
    client.create_task(parent=queue.name, task=http_task(name, receiver.url("/once")))

    def answered() -> bool:
        return client.get_task(name=name).response_count == 1

    wait_for(answered)
    task = client.get_task(name=name)
    assert task.dispatch_count == 1
    assert task.first_attempt.dispatch_time.timestamp() > 0
    assert task.last_attempt.response_status.code == 14  # UNAVAILABLE for HTTP 503
    answered_at = task.last_attempt.response_time.timestamp()
    assert task.schedule_time.timestamp() >= answered_at + 5.0 * 0.9  # the 5 s backoff


def test_schedule_time_is_honoured(client: tasks_v2.CloudTasksClient, receiver: Receiver) -> None:
    queue = make_queue(client)
    created = client.create_task(
        parent=queue.name,
        task=http_task(f"{queue.name}/tasks/eta", receiver.url("/eta"), schedule_time=later(0.4)),
    )
    wait_for(lambda: len(receiver.at("/eta")) == 1)
    assert receiver.at("/eta")[0].at_s >= created.schedule_time.timestamp() - 0.01


def test_connection_refused_is_retried(
    emulator: TasksEmulator, client: tasks_v2.CloudTasksClient
) -> None:
    with refused_port() as port:
        dead_url = f"http://127.0.0.1:{port}/gone"
        queue = make_queue(client, max_attempts=2, min_backoff=0.02)
        name = f"{queue.name}/tasks/gone"
        client.create_task(parent=queue.name, task=http_task(name, dead_url))
        wait_for(lambda: emulator.stats()["exhausted"] == 1)
    assert emulator.stats()["dispatches"] == 2


# -- command ----------------------------------------------------------------------


def test_command_serves_until_sigterm(receiver: Receiver, tmp_path: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from localcloud.tasks.command import tasks_emulator; tasks_emulator()"
    env = {
        **os.environ,
        "TASKS_EMULATOR_PORT": str(port),
        "TASKS_EMULATOR_REST_PORT": "0",
        "TASKS_EMULATOR_DB": str(tmp_path / "tasks.sqlite3"),
        "TASKS_EMULATOR_LATENCY_MS": "50",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--dispatch-threads", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith(
            f"Cloud Tasks emulator listening on 127.0.0.1:{port} (OIDC issuer http://127.0.0.1:"
        )
        assert second.strip() == f"export CLOUD_TASKS_EMULATOR_HOST=127.0.0.1:{port}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        queue = make_queue(client)
        started = time.monotonic()
        client.get_queue(name=queue.name)
        assert time.monotonic() - started >= 0.05  # TASKS_EMULATOR_LATENCY_MS
        client.create_task(parent=queue.name, task=http_task("", receiver.url("/cmd")))
        wait_for(lambda: len(receiver.at("/cmd")) == 1)
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_operations_service_answers_get_operation_directly(emulator: TasksEmulator) -> None:
    channel = grpc.insecure_channel(emulator.address)
    get_operation = channel.unary_unary(
        "/google.longrunning.Operations/GetOperation",
        request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
        response_deserializer=operations_pb2.Operation.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        get_operation(operations_pb2.GetOperationRequest(name="x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_deleting_a_queue_while_dispatching(
    emulator: TasksEmulator, client: tasks_v2.CloudTasksClient, receiver: Receiver
) -> None:
    queue = make_queue(client, max_concurrent_dispatches=1)
    receiver.delays_s["/del"] = 2.0  # the queue is deleted while the first answer is held
    client.batch_create_tasks(
        parent=queue.name,
        requests=[{"task": http_task("", receiver.url("/del"))} for _ in range(5)],
    )
    wait_for(lambda: len(receiver.at("/del")) == 1)
    client.delete_queue(name=queue.name)
    wait_for(lambda: emulator.stats()["in_flight"] == 0)  # the first answer is in
    # Anything the deleted queue still sent would go out now; a task of another
    # queue, created after, arriving proves the dispatcher has moved on.
    control = make_queue(client)
    client.create_task(parent=control.name, task=http_task("", receiver.url("/control")))
    receiver.wait_at("/control", 1)
    wait_for(lambda: emulator.stats()["in_flight"] == 0)
    assert len(receiver.at("/del")) == 1
    assert emulator.stats()["dispatches"] == 2  # the first of the deleted queue, the control
    with pytest.raises(exceptions.NotFound):
        client.list_tasks(parent=queue.name)


def test_stop_is_idempotent_and_context_manager_restarts(issuer: LocalIssuer) -> None:
    emulator = TasksEmulator(issuer=issuer)
    with emulator:
        assert emulator.running and emulator.port > 0
    assert not emulator.running
    emulator.stop()
    own = TasksEmulator()
    own.start()
    assert own.issuer.issuer_url.startswith("http://127.0.0.1:")
    own.stop()
    own.stop()


def test_rpc_latency_is_added_to_every_call(issuer: LocalIssuer) -> None:
    with TasksEmulator(issuer=issuer, rpc_latency_s=0.2) as emulator:
        channel = grpc.insecure_channel(emulator.address)
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        started = time.monotonic()
        queue = make_queue(client)
        client.get_queue(name=queue.name)
        assert time.monotonic() - started >= 0.4  # two calls, each delayed 0.2 s at least
        channel.close()
