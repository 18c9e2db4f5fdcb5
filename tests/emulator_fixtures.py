"""Module-scoped fixtures of a Cloud Tasks emulator and an official client on it.

Import them into a test module (``from tests.emulator_fixtures import ...``) to
share one emulator among that module's tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from localcloud.tasks.server import TasksEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator() as started:
        yield started


@pytest.fixture(scope="module")
def channel(emulator: TasksEmulator) -> Iterator[grpc.Channel]:
    opened = grpc.insecure_channel(emulator.address)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(channel: grpc.Channel) -> tasks_v2.CloudTasksClient:
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
