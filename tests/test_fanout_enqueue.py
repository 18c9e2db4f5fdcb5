"""The enqueuer against the Cloud Tasks emulator over gRPC, directly or through a proxy
that refuses or fails some calls, as a server without BatchCreateTasks or an overloaded
one would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.api_core.exceptions import RetryError
from google.cloud import tasks_v2
from google.rpc import code_pb2, status_pb2

from fanout.enqueue import Created, Enqueuer
from fanout.ratecap import CreationRateCap
from localcloud.tasks.server import TasksEmulator
from orders.clients import tasks_client
from orders.contract import TaskPayload, build_task
from orders.settings import CloudSettings
from tests.support.clock import FakeClock
from tests.support.fanout_setup import make_cloud

OVERLAP_WAIT_S = 2.0  # how long the proxy holds a call for another to overlap it, seconds


class Proxy(grpc.GenericRpcHandler):
    """Forwards raw CloudTasks calls to ``target``; can refuse or fail some first."""

    def __init__(self, target: str, refuse_batches: bool = False, fail_first: int = 0) -> None:
        self._channel = grpc.insecure_channel(target)
        self.refuse_batches = refuse_batches
        self.fail_first = fail_first
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.overlapped = threading.Event()  # set once two calls were in flight at once
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method = str(details.method)
        name = method.rsplit("/", 1)[-1]
        forward_call = self._channel.unary_unary(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls[name] += 1
                failing = self.fail_first > 0 and name == "BatchCreateTasks"
                if failing:
                    self.fail_first -= 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.in_flight > 1:
                    self.overlapped.set()
            try:
                if name == "BatchCreateTasks" and self.refuse_batches:
                    context.abort(grpc.StatusCode.UNIMPLEMENTED, "BatchCreateTasks is unknown here")
                if failing:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded, try again")
                # Hold the call until another one is in flight too; a client that sends
                # one at a time makes the first wait time out, and the rest pass.
                if not self.overlapped.wait(OVERLAP_WAIT_S):
                    self.overlapped.set()
                try:
                    return bytes(forward_call(request))
                except grpc.RpcError as exc:
                    context.abort(exc.code(), exc.details() or "")
                    raise
            finally:
                with self._lock:
                    self.in_flight -= 1

        return grpc.unary_unary_rpc_method_handler(handle)


def serve_proxy(proxy: Proxy) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(32), handlers=[proxy])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def cloud(tasks_emulator: TasksEmulator) -> Iterator[CloudSettings]:
    yield make_cloud("enqueue-test", tasks_emulator, "http://127.0.0.1:9")


def tasks_for(cloud: CloudSettings, count: int, prefix: str = "o") -> list[tasks_v2.Task]:
    return [
        build_task(cloud, TaskPayload(f"{prefix}{i}", "send_confirmation", 0, "run"))
        for i in range(count)
    ]


def enqueuer_via(cloud: CloudSettings, address: str, **kwargs: Any) -> Enqueuer:
    client = tasks_client(CloudSettings(**{**cloud.__dict__, "tasks_emulator_host": address}))
    return Enqueuer(client, cloud.queue_path, 4, 10.0, **kwargs)


def test_without_batch_create_it_falls_back_to_concurrent_single_creates(
    cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    proxy = Proxy(tasks_emulator.address, refuse_batches=True)
    server, address = serve_proxy(proxy)
    try:
        results = enqueuer_via(cloud, address).enqueue(tasks_for(cloud, 250))
    finally:
        server.stop(None)
    assert Counter(r.outcome for r in results) == {Created.CREATED: 250}
    assert proxy.calls["CreateTask"] == 250
    assert proxy.max_in_flight > 1  # concurrent, not one at a time
    assert tasks_emulator.stats()["tasks_created"] == 250


def test_unavailable_calls_are_retried_and_per_request_failures_are_reported(
    cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    proxy = Proxy(tasks_emulator.address, fail_first=2)
    server, address = serve_proxy(proxy)
    tasks = tasks_for(cloud, 150)
    tasks[7].name = tasks[7].name.replace("/queues/order-actions/", "/queues/elsewhere/")
    tasks[120] = tasks[3]  # the same name twice: the second is a duplicate
    try:
        results = enqueuer_via(cloud, address).enqueue(tasks)
    finally:
        server.stop(None)
    # Two refused, then two batches into order-actions and one into the queue task 7 names.
    assert proxy.calls["BatchCreateTasks"] == 2 + 3
    assert results[7].outcome is Created.FAILED and "elsewhere" in results[7].reason
    # Batches run concurrently: whichever came second found the name taken.
    assert {results[3].outcome, results[120].outcome} == {Created.CREATED, Created.DEDUPLICATED}
    assert Counter(r.outcome for r in results)[Created.CREATED] == 148


def test_a_creation_rate_cap_paces_the_creations(
    cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    enqueuer = Enqueuer(
        tasks_client(cloud), cloud.queue_path, 4, 10.0, rate_cap=CreationRateCap(400.0)
    )
    results = enqueuer.enqueue(tasks_for(cloud, 600))
    assert all(r.outcome is Created.CREATED for r in results)


@pytest.mark.parametrize(("rate", "count", "seconds"), [(100.0, 300, 2.0), (0.5, 3, 4.0)])
def test_the_cap_lets_one_seconds_worth_through_then_paces_the_rest(
    rate: float, count: int, seconds: float
) -> None:
    clock = FakeClock(0.0)
    cap = CreationRateCap(rate, clock=clock, sleep=clock.sleep)
    for _ in range(count):
        cap.take(1)
    assert clock.now_s == pytest.approx(seconds)


def test_the_rate_cap_is_off_at_zero() -> None:
    clock = FakeClock(0.0)
    CreationRateCap(0, clock=clock, sleep=clock.sleep).take(1_000_000)
    assert clock.now_s == 0.0


class ScriptedClient:
    """A stand-in for the Cloud Tasks client, for the retry logic alone (no network).

    Each BatchCreateTasks call takes the next script entry: per request index a
    status code that fails it, or an exception to raise.
    """

    def __init__(self, script: list[dict[int, int] | Exception]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    def batch_create_tasks(self, request: Any, **_: Any) -> Any:
        names = [one.task.name for one in request.requests]
        self.calls.append(names)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        failed = {i: status_pb2.Status(code=code, message="scripted") for i, code in step.items()}
        created = [tasks_v2.Task(name=n) for i, n in enumerate(names) if i not in failed]
        response = tasks_v2.BatchCreateTasksResponse(tasks=created)
        metadata = SimpleNamespace(failed_requests=failed)
        return SimpleNamespace(result=lambda timeout: response, metadata=metadata)


def test_requests_failed_for_a_passing_reason_are_sent_again_alone() -> None:
    cloud = CloudSettings(project="p")
    tasks = tasks_for(cloud, 3)
    client = ScriptedClient([{1: code_pb2.UNAVAILABLE, 2: code_pb2.INVALID_ARGUMENT}, {}])
    results = Enqueuer(client, cloud.queue_path, 1, 5.0).enqueue(tasks)  # type: ignore[arg-type]
    assert [r.outcome for r in results] == [Created.CREATED, Created.CREATED, Created.FAILED]
    assert "INVALID_ARGUMENT" in results[2].reason
    assert client.calls[1] == [tasks[1].name]  # only the retryable one went again


def test_a_call_whose_retries_ran_out_fails_its_tasks_without_stopping() -> None:
    cloud = CloudSettings(project="p")
    client = ScriptedClient([RetryError("Timeout of 90.0s exceeded", None)])
    results = Enqueuer(client, cloud.queue_path, 1, 5.0).enqueue(tasks_for(cloud, 2))  # type: ignore[arg-type]
    assert [r.outcome for r in results] == [Created.FAILED, Created.FAILED]
    assert "Timeout of 90.0s exceeded" in results[0].reason
