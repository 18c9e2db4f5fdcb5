"""Durability: the emulator killed with SIGKILL and restarted on its SQLite file.

The emulator runs as ``localcloud tasks-emulator`` in its own process group, its
queues declared in a YAML file and in ``TASKS_EMULATOR_QUEUES``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import google.auth.transport.requests
import pytest
from google.api_core import exceptions
from google.oauth2 import id_token

from localcloud.tasks.child import EmulatorChild
from localcloud.tasks.errors import EmulatorStartError
from tests.support.builders import gone, http_task, later
from tests.support.receiver import Receiver, Reply, wait_for

LOCATION = "projects/durable/locations/us-central1"
QUEUE = f"{LOCATION}/queues/orders"
CONFIG = """
project: durable
location: us-central1
queues:
  - name: orders
    rateLimits: {maxDispatchesPerSecond: 100, maxConcurrentDispatches: 10}
    retryConfig: {maxAttempts: 7, minBackoff: 0.1, maxBackoff: 1s, maxDoublings: 2}
"""


def start(db: Path, config: Path) -> EmulatorChild:
    """The emulator command on ``db``, its queues from ``config`` and the environment."""
    env = {
        "TASKS_EMULATOR_REST_PORT": "-1",
        "TASKS_EMULATOR_DB": str(db),
        "TASKS_EMULATOR_CONFIG": str(config),
        "TASKS_EMULATOR_QUEUES": "[{name: side, retryConfig: {maxAttempts: 2}}]",
        "GOOGLE_CLOUD_PROJECT": "durable",
    }
    return EmulatorChild(env=env)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def target() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def test_sigkill_loses_no_task_keeps_reservations_and_redelivers_in_flight(
    tmp_path: Path, config: Path, target: Receiver
) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = start(db, config)
    try:
        client = first.client
        queue = client.get_queue(name=QUEUE)
        assert queue.retry_config.max_attempts == 7
        assert queue.rate_limits.max_dispatches_per_second == 100
        assert client.get_queue(name=f"{LOCATION}/queues/side").retry_config.max_attempts == 2
        done = http_task(f"{QUEUE}/tasks/done", target.url("/done"))
        client.create_task(parent=QUEUE, task=done)
        deleted = http_task(f"{QUEUE}/tasks/deleted", target.url("/x"), schedule_time=later(600))
        client.create_task(parent=QUEUE, task=deleted)
        client.delete_task(name=deleted["name"])
        queued = [f"{QUEUE}/tasks/later-{i}" for i in range(5)]
        for name in queued:
            client.create_task(
                parent=QUEUE, task=http_task(name, target.url("/later"), schedule_time=later(3600))
            )
        batched = http_task(
            f"{QUEUE}/tasks/batched", target.url("/later"), schedule_time=later(3600)
        )
        batch = {"parent": QUEUE, "request_id": "batch-1", "requests": [{"task": batched}]}
        operation = client.batch_create_tasks(request=batch).operation
        target.scripts["/slow"] = [Reply(200, delay_s=30.0)] * 3
        in_flight = [f"{QUEUE}/tasks/slow-{i}" for i in range(3)]
        for name in in_flight:
            client.create_task(parent=QUEUE, task=http_task(name, target.url("/slow")))
        wait_for(lambda: len(target.at("/slow")) == 3 and gone(client, done["name"]), 20)
        with pytest.raises(EmulatorStartError):  # one file, one emulator
            start(db, config)
    finally:
        first.kill()

    second = start(db, config)
    try:
        client = second.client
        with pytest.raises(exceptions.AlreadyExists):
            client.create_task(parent=QUEUE, task=done)
        with pytest.raises(exceptions.AlreadyExists):
            client.create_task(parent=QUEUE, task=deleted)
        again = client.batch_create_tasks(request=batch)  # request_id: the first result
        assert again.operation == operation and not again.metadata.failed_requests
        wait_for(lambda: len(target.at("/slow")) == 6, 20)
        redelivered = target.at("/slow")[3:]
        assert sorted(h.headers["x-cloudtasks-taskname"] for h in redelivered) == [
            "slow-0",
            "slow-1",
            "slow-2",
        ]
        assert {h.headers["x-cloudtasks-taskretrycount"] for h in redelivered} == {"1"}
        wait_for(lambda: all(gone(client, name) for name in in_flight), 20)
        listed = {t.name for t in client.list_tasks(parent=QUEUE)}
        assert listed == {*queued, f"{QUEUE}/tasks/batched"}
        later_task = client.get_task(name=queued[0])
        assert later_task.schedule_time.timestamp() > 0
        assert target.at("/later") == [] and len(target.at("/done")) == 1
    finally:
        second.stop()


def test_a_restart_on_the_same_db_keeps_the_oidc_key_and_issuer(
    tmp_path: Path, config: Path, target: Receiver
) -> None:
    db = tmp_path / "tasks.sqlite3"
    audience = "https://worker.example"
    oidc = {
        "service_account_email": "invoker@durable.iam.gserviceaccount.com",
        "audience": audience,
    }

    def token_of(child: EmulatorChild, path: str) -> str:
        child.client.create_task(
            parent=QUEUE, task=http_task("", target.url(path), oidc_token=oidc)
        )
        wait_for(lambda: target.at(path) != [], 20.0)
        return target.at(path)[0].headers["authorization"].removeprefix("Bearer ")

    first = start(db, config)
    try:
        before = token_of(first, "/before")
        issuer_url = first.issuer_url
    finally:
        first.kill()
    second = start(db, config)
    try:
        assert second.issuer_url == issuer_url
        after = token_of(second, "/after")
        request = google.auth.transport.requests.Request()
        certs_url = issuer_url + "/certs"
        for token in (before, after):  # the worker's trust, set up once, still holds
            claims = id_token.verify_token(token, request, audience=audience, certs_url=certs_url)
            assert claims["iss"] == issuer_url
    finally:
        second.stop()
