"""Conformance fixtures: the same tests against the emulator (default) or real Cloud Tasks.

Against real Cloud Tasks, set:

* ``CONFORMANCE_PROJECT`` and ``CONFORMANCE_LOCATION``: where to create the
  (uniquely named, deleted afterwards) test queues;
* ``GOOGLE_APPLICATION_CREDENTIALS``: a service account key allowed to manage
  queues and tasks and to act as ``CONFORMANCE_INVOKER_EMAIL``;
* ``CONFORMANCE_TARGET_URL`` and ``CONFORMANCE_TARGET_PORT``: a public HTTPS URL
  forwarded to that local port, where the tests' HTTP target listens.

Without ``CONFORMANCE_PROJECT`` the tests start a :class:`TasksEmulator` on free
loopback ports; a failure to start it fails the tests (they never skip).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import (
    CloudTasksGrpcTransport as BetaTransport,
)

from localcloud.tasks.server import TasksEmulator
from tests.support.conformance_cloud import GOOGLE_CERTS_URL, GOOGLE_ISSUER, Cloud
from tests.support.receiver import Receiver


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="package")
def cloud() -> Iterator[Cloud]:
    project = os.environ.get("CONFORMANCE_PROJECT")
    if project:
        location = f"projects/{project}/locations/{os.environ['CONFORMANCE_LOCATION']}"
        client = tasks_v2.CloudTasksClient()
        beta = tasks_v2beta3.CloudTasksClient()
        email = os.environ["CONFORMANCE_INVOKER_EMAIL"]
        found = Cloud(client, beta, location, True, GOOGLE_CERTS_URL, GOOGLE_ISSUER, email, 120.0)
        yield found
        _delete_queues(found)
        return
    emulator = TasksEmulator(dispatch_threads=16)
    try:
        emulator.start()
    except Exception as exc:
        if _truthy("CI"):
            pytest.fail(f"the Cloud Tasks emulator could not start in CI: {exc}")
        raise
    channel = grpc.insecure_channel(emulator.address)
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    beta = tasks_v2beta3.CloudTasksClient(transport=BetaTransport(channel=channel))
    issuer = emulator.issuer
    found = Cloud(
        client,
        beta,
        "projects/conformance/locations/us-central1",
        False,
        issuer.certs_url,
        issuer.issuer_url,
        "invoker@conformance.iam.gserviceaccount.com",
        20.0,
    )
    try:
        yield found
    finally:
        _delete_queues(found)
        channel.close()
        emulator.stop()


def _delete_queues(found: Cloud) -> None:
    for name in found.queues:
        with contextlib.suppress(exceptions.NotFound):
            found.client.delete_queue(name=name)


@pytest.fixture
def target() -> Iterator[Receiver]:
    port = int(os.environ.get("CONFORMANCE_TARGET_PORT") or 0)
    started = Receiver(port, os.environ.get("CONFORMANCE_TARGET_URL", ""))
    yield started
    started.close()
